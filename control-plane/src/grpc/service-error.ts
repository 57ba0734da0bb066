/**
 * The control plane's one error edge: SluiceError → gRPC status. Problems (invalid input with
 * locations) travel as a binary sluice.v1.PolicyProblems in the `sluice-problems-bin` trailer.
 */
import { Metadata, status as GrpcCode, type ServerErrorResponse, type handleUnaryCall } from "@grpc/grpc-js";
import { PolicyProblems, type Problem } from "@sluice/proto";
import { SluiceError, toGrpcStatus } from "@sluice/shared/errors";
import { scrubSecrets, type Logger } from "@sluice/shared/logging";
import type { Actor } from "../domain/command-meta.js";
import type { Authenticator } from "./authenticate.js";

export const PROBLEMS_METADATA_KEY = "sluice-problems-bin";

function problemsOf(e: SluiceError): Problem[] {
  const d = e.details as { problems?: Partial<Problem>[] } | undefined;
  return (d?.problems ?? []).map((p) => ({
    path: p.path ?? "",
    line: p.line ?? 0,
    column: p.column ?? 0,
    pointer: p.pointer ?? "",
    message: p.message ?? "",
  }));
}

export function toServiceError(err: unknown): ServerErrorResponse {
  const e = SluiceError.from(err);
  const metadata = new Metadata();
  const problems = problemsOf(e);
  if (problems.length) metadata.set(PROBLEMS_METADATA_KEY, Buffer.from(PolicyProblems.encode({ problems }).finish()));
  // an internal error's message may come from a library: keep it one line, scrubbed
  const details = scrubSecrets((e.message.split("\n")[0] ?? "").slice(0, 500));
  return Object.assign(new Error(details), { code: toGrpcStatus(e.code) as GrpcCode, details, metadata });
}

export interface UnaryContext {
  actor: Actor;
}

/**
 * Wraps a handler: authenticate, run, translate errors. Services by other helpers use it the same way.
 * `authorize` runs after authentication (e.g. requireAnyGroup for admin-only calls).
 */
export function unary<Req, Res>(
  o: { auth: Authenticator; logger: Logger; method: string; authorize?: (actor: Actor) => void },
  fn: (req: Req, ctx: UnaryContext) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    (async () => {
      const actor = await o.auth(call.metadata);
      o.authorize?.(actor);
      return fn(call.request, { actor });
    })().then(
      (res) => callback(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        const level = se.code === GrpcCode.INTERNAL || se.code === GrpcCode.UNAVAILABLE ? "error" : "info";
        o.logger[level]({ method: o.method, code: GrpcCode[se.code ?? GrpcCode.UNKNOWN], reason: se.details }, "call refused");
        callback(se);
      },
    );
  };
}
