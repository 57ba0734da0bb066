import { SluiceError } from "@sluice/shared/errors";

/** A domain rule broken by a command, pointing into the bundle (JSON pointer). */
export interface DomainProblem {
  pointer: string;
  message: string;
}

/** Thrown by deciders: invalid_argument carrying every problem (secret-free by construction). */
export function rejected(problems: DomainProblem[]): SluiceError {
  const first = problems[0]!;
  return new SluiceError("invalid_argument", `${first.pointer}: ${first.message}`, { problems });
}
