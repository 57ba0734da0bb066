/**
 * NATS failures that pass: a request nobody answered in time, no responders, JetStream not (yet)
 * answering, a stream without a leader while its cluster elects one, a connection moving between
 * servers. Inner layers turn them into the one error type as `unavailable` (the gRPC edge answers
 * UNAVAILABLE, the CLI says to retry) instead of letting the library's "timeout" surface as an
 * internal error; a start-up waits them out for a bounded time.
 */
import { SluiceError } from "../errors/index.js";

/** JetStream API error codes of a cluster that is forming or failing over (nats-server 2.9). */
const PASSING_API_CODES = new Set([
  10008, // JetStream system temporarily unavailable
  10005, // no suitable peers for placement (a server still joining)
  10074, // cluster not assigned / stream leader being elected
  10023, // insufficient resources (a peer not current yet)
]);

const PASSING_NAMES = new Set(["TimeoutError", "NoResponders", "ConnectionError", "DrainingConnectionError", "JetStreamNotEnabled", "RequestError"]);

/** True for a NATS failure that may pass if the same thing is tried again shortly. */
export function isPassingNatsFailure(e: unknown): boolean {
  if (SluiceError.is(e)) return e.code === "unavailable" || e.code === "deadline_exceeded";
  if (!(e instanceof Error)) return false;
  if (e.name === "JetStreamApiError") {
    const code = (e as { code?: number }).code;
    const status = (e as { status?: number }).status;
    return (code !== undefined && PASSING_API_CODES.has(code)) || status === 503 || status === 408;
  }
  if (PASSING_NAMES.has(e.name)) return true;
  // the library reports some of these as plain errors
  return /\btimeout\b|no responders|jetstream (is )?not enabled|temporarily unavailable|no suitable peers|leader/i.test(e.message);
}

/**
 * A passing NATS failure as `unavailable`, saying what could not be done; anything else unchanged
 * (a SluiceError keeps its code; the edge makes other errors internal).
 */
export function natsUnavailable(e: unknown, what: string): unknown {
  if (SluiceError.is(e) || !isPassingNatsFailure(e)) return e;
  const reason = (e as Error).message.split("\n")[0]!.slice(0, 200) || (e as Error).name;
  return new SluiceError("unavailable", `${what}: NATS JetStream did not answer (${reason}); the cluster may be electing a leader: retry`, undefined, { cause: e });
}
