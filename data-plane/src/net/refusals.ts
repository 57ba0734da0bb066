/**
 * Every way a connection is refused before it relays, as one closed set. Each code names the
 * SQLSTATE the client gets (in a FATAL ErrorResponse), the stage of its session.denied event (the
 * code is that event's `reason`), and whose doing it is: `denied` (who the client is or what it
 * asked for) or `failed` (the node could not serve it), as sluice_dp_sessions_total counts them.
 * The message is the caller's, safe for the client by construction. Pure.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { SessionDenyStage } from "@sluice/shared/events";
import { WireError } from "../wire/frame-scanner.js";

interface RefusalKind {
  readonly sqlstate: string;
  readonly stage: SessionDenyStage;
  readonly outcome: "denied" | "failed";
}

export const REFUSALS = {
  /** a plaintext StartupMessage where the listener requires TLS */
  tls_required: { sqlstate: "28000", stage: "startup", outcome: "denied" },
  /** direct TLS without ALPN "postgresql" */
  alpn_required: { sqlstate: "08P01", stage: "startup", outcome: "denied" },
  replication_refused: { sqlstate: "28000", stage: "startup", outcome: "denied" },
  no_user: { sqlstate: "28000", stage: "startup", outcome: "denied" },
  /** a startup setting that would switch the session's identity (role, session_authorization) */
  identity_setting: { sqlstate: "42501", stage: "startup", outcome: "denied" },
  /** a startup search_path where the identity's policies restrict tables */
  search_path_setting: { sqlstate: "42501", stage: "startup", outcome: "denied" },
  /** a startup setting that would change how the server reads SQL (client_encoding, …) */
  parser_setting: { sqlstate: "08004", stage: "startup", outcome: "denied" },
  /** the source used up its failed handshakes (handshake-limiter.ts); told when to try again, not recorded */
  too_many_failed_handshakes: { sqlstate: "53300", stage: "startup", outcome: "denied" },
  /** a protocol version other than 3.0 */
  unsupported_protocol: { sqlstate: "0A000", stage: "startup", outcome: "denied" },
  /** the client broke the protocol (or left) before the session began */
  protocol_violation: { sqlstate: "08P01", stage: "startup", outcome: "failed" },
  /** the authentication time-out passed */
  timeout: { sqlstate: "08006", stage: "startup", outcome: "failed" },
  /** the node has no policy snapshot yet */
  not_ready: { sqlstate: "57P03", stage: "startup", outcome: "failed" },
  /** the token did not verify (signature, issuer, audience, expiry, algorithm) */
  token_rejected: { sqlstate: "28P01", stage: "authentication", outcome: "denied" },
  /** the token could not be checked: its issuer's keys are unreachable */
  issuer_unavailable: { sqlstate: "28000", stage: "authentication", outcome: "failed" },
  unknown_resource: { sqlstate: "3D000", stage: "authorization", outcome: "denied" },
  no_policy: { sqlstate: "28000", stage: "authorization", outcome: "denied" },
  upstream_unavailable: { sqlstate: "08006", stage: "upstream", outcome: "failed" },
  /** the upstream started with a setting the classifier's reading of SQL depends on changed */
  pinned_setting: { sqlstate: "0A000", stage: "upstream", outcome: "failed" },
  /** recording session.started or session.authenticated failed closed */
  audit_unavailable: { sqlstate: "57P03", stage: "audit", outcome: "failed" },
  internal: { sqlstate: "XX000", stage: "startup", outcome: "failed" },
} as const satisfies Record<string, RefusalKind>;

export type RefusalCode = keyof typeof REFUSALS;

/** A refusal to tell the client: its code and a client-safe message; `logReason` goes to the log only. */
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
  readonly logReason?: string;
}

export const refusal = (code: RefusalCode, message: string, logReason?: string): Refusal => ({ code, message, logReason });

/** Thrown inside the connection's set-up to refuse it; `refusalOf` reads it back. */
export class RefusalError extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.message);
    this.name = "RefusalError";
  }
}

/** What any error thrown during set-up refuses the connection with. */
export function refusalOf(e: unknown): Refusal {
  if (e instanceof RefusalError) return e.refusal;
  if (e instanceof WireError) return refusal(e.sqlstate === REFUSALS.unsupported_protocol.sqlstate ? "unsupported_protocol" : "protocol_violation", e.message);
  // the audit recorder failing closed at connect
  if (SluiceError.is(e, "unavailable")) return refusal("audit_unavailable", e.message);
  return refusal("internal", "internal error while setting up the session", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
}
