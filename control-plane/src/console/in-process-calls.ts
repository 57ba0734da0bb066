/**
 * Calls the control plane's own gRPC service implementations in-process, as a given actor, so the
 * console runs exactly the code the CLI reaches over the network (the same authorisation, filters,
 * validation and error codes) without holding anyone's token.
 *
 * The actor travels on a Metadata object that only this module creates and remembers (a WeakMap
 * keyed by object identity). grpc-js builds a fresh Metadata for every network call, so nothing that
 * arrives over a socket can carry an in-process actor: it is verified as a bearer token as before.
 */
import { EventEmitter } from "node:events";
import { Metadata, type ServiceError, type handleServerStreamingCall, type handleUnaryCall } from "@grpc/grpc-js";
import { SluiceError, fromGrpcStatus, type ErrorCode } from "@sluice/shared/errors";
import type { Actor } from "../domain/command-meta.js";
import type { Authenticator } from "../grpc/authenticate.js";

/** A refused call: the gRPC status the CLI would have seen, and its one-line message. */
export class CallRefused extends Error {
  constructor(readonly grpcCode: number, message: string) {
    super(message);
    this.name = "CallRefused";
  }

  get code(): ErrorCode {
    return fromGrpcStatus(this.grpcCode);
  }
}

function refused(err: unknown): Error {
  const e = err as Partial<ServiceError>;
  if (typeof e?.code === "number") return new CallRefused(e.code, e.details ?? e.message ?? "refused");
  return SluiceError.from(err);
}

/** The writable side a server-streaming handler sees; what it writes comes out of `messages()`. */
class InProcessStream<Req, Res> extends EventEmitter {
  readonly cancelled = false;
  private readonly queue: Res[] = [];
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor(readonly request: Req, readonly metadata: Metadata) {
    super();
    // the handler reports failures with emit("error"); without a listener EventEmitter would throw
    this.on("error", (err: unknown) => {
      this.failure = refused(err);
      this.ended = true;
      this.wake?.();
    });
  }

  write(msg: Res): boolean {
    this.queue.push(msg);
    this.wake?.();
    // no back-pressure to model: the consumer drains the queue as fast as it renders
    return true;
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *messages(signal: AbortSignal): AsyncGenerator<Res> {
    const stop = () => {
      this.emit("cancelled");
      this.emit("close");
      this.ended = true;
      this.wake?.();
    };
    signal.addEventListener("abort", stop, { once: true });
    try {
      for (;;) {
        while (this.queue.length) yield this.queue.shift()!;
        if (this.failure) throw this.failure;
        if (this.ended || signal.aborted) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", stop);
      if (!signal.aborted && !this.ended) stop();
    }
  }
}

export class InProcessCalls {
  private readonly actors = new WeakMap<Metadata, Actor>();

  /** The control plane's authenticator, extended to recognise the metadata this object made. */
  authenticator(network: Authenticator): Authenticator {
    return (md) => {
      const actor = this.actors.get(md);
      return actor ? Promise.resolve(actor) : network(md);
    };
  }

  private metadataFor(actor: Actor): Metadata {
    const md = new Metadata();
    this.actors.set(md, { subject: actor.subject, issuer: actor.issuer, groups: [...actor.groups] });
    return md;
  }

  /** Runs a unary handler as `actor`; a refusal rejects with CallRefused. */
  unary<Req, Res>(handler: handleUnaryCall<Req, Res>, request: Req, actor: Actor): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const call = { request, metadata: this.metadataFor(actor), cancelled: false, getPeer: () => "in-process" };
      handler(call as unknown as Parameters<handleUnaryCall<Req, Res>>[0], (err, res) => {
        if (err) reject(refused(err));
        else resolve(res as Res);
      });
    });
  }

  /** Runs a server-streaming handler as `actor`; aborting `signal` cancels the call like a client would. */
  serverStream<Req, Res>(handler: handleServerStreamingCall<Req, Res>, request: Req, actor: Actor, signal: AbortSignal): AsyncGenerator<Res> {
    const call = new InProcessStream<Req, Res>(request, this.metadataFor(actor));
    handler(call as unknown as Parameters<handleServerStreamingCall<Req, Res>>[0]);
    return call.messages(signal);
  }
}
