/**
 * How `sluice dev` starts and stops its parts: every start-up step names what it starts and where,
 * so a failure is one line an operator can act on; stopping runs the parts in reverse within one
 * time budget, so a part that waits for an absent NATS cannot hold the process.
 */
import { SluiceError } from "@sluice/shared/errors";

/** Runs a start-up step; its failure becomes `what: reason` (the reason already names where). */
export async function startStep<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new SluiceError(SluiceError.is(e) ? e.code : "unavailable", msg.startsWith(what) ? msg : `${what}: ${msg}`, undefined, { cause: e });
  }
}

/** Resolves after `ms`, or rejects with a named time-out. */
export function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new SluiceError("deadline_exceeded", `${what}: no answer within ${Math.round(ms / 100) / 10} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

export interface TeardownStep {
  what: string;
  /** `budgetMs`: what is left of the whole stop when this step begins */
  stop: (budgetMs: number) => Promise<unknown>;
}

/** The parts started so far, stopped in reverse within one budget. */
export class Teardown {
  private readonly steps: TeardownStep[] = [];

  add(what: string, stop: (budgetMs: number) => Promise<unknown>): void {
    this.steps.push({ what, stop });
  }

  get size(): number {
    return this.steps.length;
  }

  /**
   * Stops every part, newest first, each within what is left of `budgetMs` (a part that runs out
   * is abandoned: the process exits after this). Returns one line per part that failed or ran out.
   */
  async run(budgetMs: number): Promise<string[]> {
    const end = Date.now() + budgetMs;
    const problems: string[] = [];
    for (const s of this.steps.splice(0).reverse()) {
      const left = end - Date.now();
      if (left <= 0) {
        problems.push(`${s.what}: not stopped (out of time)`);
        continue;
      }
      try {
        await within(`stopping ${s.what}`, left, s.stop(left));
      } catch (e) {
        problems.push(SluiceError.is(e, "deadline_exceeded") ? e.message : `stopping ${s.what}: ${(e as Error).message}`);
      }
    }
    return problems;
  }
}
