/**
 * gRPC client helpers for admin commands: dial the control plane named by flags / env / dev context
 * (resolveTarget), send the bearer token, and turn a failed call into a SluiceError whose one-line
 * message the CLI prints. Problems from an INVALID_ARGUMENT come back from the `sluice-problems-bin`
 * trailer.
 */
import { credentials, Metadata, type Client, type ServiceError, type CallOptions } from "@grpc/grpc-js";
import { PolicyProblems, type Problem } from "@sluice/proto";
import { SluiceError, fromGrpcStatus } from "@sluice/shared/errors";
import { resolveTarget } from "./cli-kit.js";

export const PROBLEMS_METADATA_KEY = "sluice-problems-bin";

export interface Target {
  server: string;
  token: string;
}

type ClientCtor<C extends Client> = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => C;

/** A connected client with the caller's token; `close()` when done (or use withClient). */
export interface Connected<C extends Client> {
  client: C;
  target: Target;
  /** calls a unary method: `await c.call("apply", request)` */
  call<Req, Res>(method: string, request: Req, o?: { timeoutMs?: number }): Promise<Res>;
  close(): void;
}

export function bearerMetadata(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

/** Problems carried by a failed call (INVALID_ARGUMENT), empty otherwise. */
export function problemsOf(err: unknown): Problem[] {
  const md = (err as { metadata?: Metadata }).metadata;
  const raw = md?.get(PROBLEMS_METADATA_KEY)[0];
  if (!(raw instanceof Buffer)) return [];
  try {
    return PolicyProblems.decode(raw).problems;
  } catch {
    return [];
  }
}

/** ServiceError → SluiceError (problems kept in details), with a message fit for one stderr line. */
export function fromServiceError(err: unknown, server: string): SluiceError {
  const se = err as ServiceError;
  if (typeof se?.code !== "number") return SluiceError.from(err);
  const code = fromGrpcStatus(se.code);
  const problems = problemsOf(err);
  if (se.code === 14 /* UNAVAILABLE */ && /No connection established|ECONNREFUSED|connect/i.test(se.details ?? "")) {
    return new SluiceError("unavailable", `cannot reach the control plane at ${server}`, undefined, { cause: err });
  }
  return new SluiceError(code, se.details || se.message, problems.length ? { problems } : undefined, { cause: err });
}

export function connectClient<C extends Client>(Ctor: ClientCtor<C>, flags: { server?: string; token?: string }): Connected<C> {
  const target = resolveTarget(flags);
  const client = new Ctor(target.server, credentials.createInsecure());
  const md = bearerMetadata(target.token);
  return {
    client,
    target,
    call<Req, Res>(method: string, request: Req, o: { timeoutMs?: number } = {}) {
      const fn = (client as unknown as Record<string, (r: Req, m: Metadata, opt: Partial<CallOptions>, cb: (e: ServiceError | null, r: Res) => void) => void>)[method];
      if (typeof fn !== "function") return Promise.reject(new Error(`no method ${method}`));
      return new Promise<Res>((resolve, reject) => {
        fn.call(client, request, md, { deadline: Date.now() + (o.timeoutMs ?? 30_000) }, (e, r) =>
          e ? reject(fromServiceError(e, target.server)) : resolve(r),
        );
      });
    },
    close: () => client.close(),
  };
}

/** Dials, runs `fn`, closes. */
export async function withClient<C extends Client, T>(Ctor: ClientCtor<C>, flags: { server?: string; token?: string }, fn: (c: Connected<C>) => Promise<T>): Promise<T> {
  const c = connectClient(Ctor, flags);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}
