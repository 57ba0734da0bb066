/**
 * Who may start a session, decided from what the connection said and what the node knows: the
 * startup parameters, the verified identity, the policy snapshot, and later what the upstream
 * reported at its start. Each step answers a session (or the next step) or a refusal (refusals.ts).
 * Pure: no sockets, no clock; the socket adapter (client-connection.ts) runs the I/O around it.
 */
import { SluiceError } from "@sluice/shared/errors";
import { searchPathRestricted, type PolicySnapshot, type ResourceSpec } from "@sluice/shared/policy";
import { decodeParameterStatus } from "../wire/decode.js";
import { mayConnect } from "../session/may-connect.js";
import { filterStartupParams, startupRefusalMessage } from "../session/startup-params.js";
import { pinnedSettingViolation } from "../session/pinned-settings.js";
import type { ConnectionInfo, SessionInfo } from "../session/session-hooks.js";
import { refusal, type Refusal } from "./refusals.js";

export interface VerifiedIdentity {
  subject: string;
  issuer: string;
  claims: Record<string, unknown>;
  groups: string[];
}

/** Before the password is asked for: the listener's TLS rule and what the StartupMessage may ask. */
export function admitStartup(params: Readonly<Record<string, string>>, o: { tlsRequired: boolean; tls: boolean }): Refusal | null {
  if (o.tlsRequired && !o.tls) return refusal("tls_required", "TLS is required: connect with sslmode=require");
  if (params.replication !== undefined && params.replication !== "false" && params.replication !== "0")
    return refusal("replication_refused", "replication connections are not supported through sluice");
  if (!params.user) return refusal("no_user", "no user name specified in the startup packet");
  return null;
}

/** A token that did not verify. verifyToken's messages are safe by construction (never the key, never the token). */
export function tokenRefusal(e: unknown): Refusal {
  const se = SluiceError.from(e, "unauthenticated");
  if (se.code === "unavailable") return refusal("issuer_unavailable", "token rejected", `${se.code}: ${se.message}`);
  return refusal("token_rejected", se.code === "unauthenticated" ? se.message : "token rejected", `${se.code}: ${se.message}`);
}

export type Admission =
  | {
      ok: true;
      info: SessionInfo;
      resource: ResourceSpec;
      /** the startup settings the upstream session starts with */
      forward: Record<string, string>;
      /** settings the client asked for that are not forwarded (for the log) */
      dropped: string[];
    }
  /** `info` once the identity is known (the denial names its subject) */
  | { ok: false; refusal: Refusal; info?: SessionInfo };

/** After the token: the resource it asked for, whether a policy lets the identity connect there, and the startup settings. */
export function admit(conn: ConnectionInfo, params: Readonly<Record<string, string>>, id: VerifiedIdentity, snapshot: PolicySnapshot): Admission {
  const resourceName = conn.resource ?? "";
  const resource = snapshot.bundle.resources.find((r) => r.name === resourceName);
  if (!resource) return { ok: false, refusal: refusal("unknown_resource", `database "${resourceName}" does not exist`) };
  const info: SessionInfo = {
    sessionId: conn.sessionId,
    nodeId: conn.nodeId,
    region: conn.region,
    resource: resourceName,
    clientUser: params.user,
    applicationName: params.application_name,
    clientAddress: conn.clientAddress,
    subject: id.subject,
    issuer: id.issuer,
    groups: id.groups,
    claims: id.claims,
    policyRevision: snapshot.revision,
  };
  if (!mayConnect(snapshot.bundle, resourceName, id.groups, id.issuer))
    return { ok: false, info, refusal: refusal("no_policy", `no policy allows "${id.subject}" to connect to "${resourceName}"`) };
  const restrictsTables = searchPathRestricted(snapshot.bundle, { resource: resourceName, groups: id.groups, issuer: id.issuer });
  const fp = filterStartupParams(params, { restrictsTables });
  if (!fp.ok) {
    const code = fp.refusal === "parser-setting" ? "parser_setting" : fp.refusal === "identity" ? "identity_setting" : "search_path_setting";
    return { ok: false, info, refusal: refusal(code, startupRefusalMessage(fp)) };
  }
  return { ok: true, info, resource, forward: fp.forward, dropped: fp.dropped };
}

/** The upstream's settings at its start: the classifier reads statements with pinned ones, so a server that starts otherwise is refused. */
export function upstreamRefusal(parameterStatus: readonly Buffer[]): Refusal | null {
  for (const ps of parameterStatus) {
    const { name, value } = decodeParameterStatus(ps);
    const why = pinnedSettingViolation(name, value);
    if (why !== undefined) return refusal("pinned_setting", why);
  }
  return null;
}
