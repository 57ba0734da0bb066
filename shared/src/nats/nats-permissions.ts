/**
 * The NATS permission model (contract: "NATS layout", least privilege), as allow-lists of subjects.
 * Pure: the same lists become the scoped signing keys of the sluice account (nats-auth.ts), so every
 * data-plane node's user is templated by the server from ONE role definition: nats-server 2.9 fills
 * `{{tag(region)}}`, `{{tag(node)}}` and `{{tag(cancel)}}` from the tags of the user JWT it verifies
 * (permission templates exist for scoped signing keys only in 2.9; config-file users have none).
 *
 *  - data-plane: publishes its own audit lanes `sluice.audit.<region>.<node>.>` (and looks up their last
 *    stored message with a direct get by subject), reads the snapshot
 *    bucket, puts its own fleet key, files (and cancels) approval requests and watches their decisions on
 *    SLUICE_CONTROL (consumers filtered to `sluice.control.approval.*`), routes cancels to any node
 *    and hears its own. Nothing else: no other node's lanes, no control or checkpoint subject, no
 *    stream or consumer management, no delete or purge.
 *  - control-plane: owns SLUICE_CONTROL, SLUICE_CHECKPOINTS and the buckets (creates and updates the
 *    layout, appends, projects), reads SLUICE_AUDIT, answers approval requests. It may not publish
 *    into the audit lanes, and may not delete or purge a stream or a message.
 *  - auditor: reads SLUICE_AUDIT and SLUICE_CHECKPOINTS through ephemeral consumers and message
 *    gets, and publishes nothing else (no stream subject, no write API).
 *  - fleet-reader: reads the fleet bucket (`sluice fleet status`, `sluice connect-info` in a pipeline).
 *
 * JetStream is driven through request subjects, so "reading" a stream is publishing read-only API
 * requests: `$JS.API.STREAM.INFO.<s>`, `$JS.API.CONSUMER.CREATE.<s>.<name>.<filter>` (2.9's filtered
 * form, which lets a permission pin the filter), `$JS.API.CONSUMER.MSG.NEXT.<s>.<name>`,
 * `$JS.API.DIRECT.GET.<s>.…`; KV puts are publishes to `$KV.<bucket>.<key>`. Replies arrive on the
 * role's own inbox (natsNames().*Inbox), which is the only `_INBOX` space it may subscribe to.
 */
import { kvStreamName, type NatsNames } from "./nats-names.js";

export type NatsRole = "data-plane" | "control-plane" | "auditor" | "fleet-reader";
export const NATS_ROLES: readonly NatsRole[] = ["data-plane", "control-plane", "auditor", "fleet-reader"];

/** Template placeholders nats-server 2.9 replaces with the user JWT's tags / name. */
export const TEMPLATE = {
  region: "{{tag(region)}}",
  node: "{{tag(node)}}",
  /** the node's number as encoded in BackendKeyData (cancel routing subjects use it) */
  cancel: "{{tag(cancel)}}",
  name: "{{name()}}",
} as const;

export interface SubjectPermission {
  allow: string[];
  deny: string[];
}

export interface RolePermissions {
  pub: SubjectPermission;
  sub: SubjectPermission;
  /** may answer requests it received (one reply each): the control plane answering approval requests */
  allowResponses: boolean;
}

const API = "$JS.API";

/** Management and destructive APIs no sluice role needs at run time (streams are removed by operators). */
const DESTRUCTIVE = [`${API}.STREAM.DELETE.>`, `${API}.STREAM.PURGE.>`, `${API}.STREAM.MSG.DELETE.>`];

/** Read-only JetStream access to one stream: info, ephemeral/ordered consumers (optionally pinned to a filter), gets. */
function readStream(stream: string, filter?: string): string[] {
  return [
    `${API}.STREAM.INFO.${stream}`,
    // 2.9 API: CONSUMER.CREATE.<stream>.<name>.<filter>; the server checks the filter matches the config
    filter ? `${API}.CONSUMER.CREATE.${stream}.*.${filter}` : `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    // push consumers (KV watch) ask the client to answer flow-control requests
    `$JS.FC.${stream}.>`,
    ...(filter ? [] : [`${API}.CONSUMER.CREATE.${stream}`, `${API}.DIRECT.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`, `${API}.STREAM.MSG.GET.${stream}`]),
  ];
}

/** The permissions of a role. Data-plane and fleet-reader lists hold TEMPLATE placeholders. */
export function rolePermissions(names: NatsNames, role: NatsRole): RolePermissions {
  const kvSnap = kvStreamName(names.snapshotBucket);
  const kvFleet = kvStreamName(names.fleetBucket);
  // the approval decisions of one request: sluice.control.approval.<id>
  const approvalFilter = names.controlAggregateFilter("approval");
  switch (role) {
    case "data-plane": {
      const cancelAny = names.patterns.cancel("*");
      return {
        pub: {
          allow: [
            names.patterns.auditLanes(TEMPLATE.region, TEMPLATE.node),
            `$KV.${names.fleetBucket}.${TEMPLATE.node}`,
            names.approvalRequestSubject,
            // cancels of the requests it filed, on its own subject only (the control plane checks the request is that node's)
            names.patterns.approvalCancel(TEMPLATE.node),
            cancelAny,
            `${API}.INFO`,
            `${API}.STREAM.INFO.${names.auditStream}`,
            // the last stored message of its own lanes, looked up after an uncertain publish (direct get by subject)
            `${API}.DIRECT.GET.${names.auditStream}.${names.patterns.auditLanes(TEMPLATE.region, TEMPLATE.node)}`,
            `${API}.STREAM.INFO.${kvFleet}`,
            ...readStream(kvSnap),
            ...readStream(names.controlStream, approvalFilter),
          ],
          deny: [...DESTRUCTIVE],
        },
        sub: {
          allow: [`${names.patterns.dataPlaneInbox(TEMPLATE.region, TEMPLATE.node)}.>`, names.patterns.cancel(TEMPLATE.cancel)],
          deny: [],
        },
        allowResponses: false,
      };
    }
    case "control-plane":
      return {
        pub: {
          allow: [
            names.controlAll,
            names.checkpointAll,
            `$KV.${names.snapshotBucket}.>`,
            `$KV.${names.leaseBucket}.>`,
            // the layout (streams, buckets, consumers) is the control plane's to create and update
            `${API}.>`,
            `$JS.FC.>`,
            `$JS.ACK.>`,
          ],
          deny: [...DESTRUCTIVE, names.auditAll, `$KV.${names.fleetBucket}.>`],
        },
        sub: {
          // the replicas share one inbox space: they are one principal (one credentials file for all of them)
          allow: [`${names.patterns.controlPlaneInbox("*")}.>`, names.approvalRequestSubject, names.approvalCancelAll],
          deny: [],
        },
        allowResponses: true,
      };
    case "auditor":
      return {
        pub: {
          allow: [`${API}.INFO`, ...readStream(names.auditStream), ...readStream(names.checkpointStream)],
          deny: [...DESTRUCTIVE],
        },
        sub: { allow: [`${names.patterns.auditorInbox(TEMPLATE.name)}.>`], deny: [] },
        allowResponses: false,
      };
    case "fleet-reader":
      return {
        pub: { allow: [`${API}.INFO`, ...readStream(kvFleet)], deny: [...DESTRUCTIVE] },
        sub: { allow: [`${names.patterns.fleetReaderInbox(TEMPLATE.name)}.>`], deny: [] },
        allowResponses: false,
      };
  }
  const never: never = role;
  throw new Error(`unknown role ${String(never)}`);
}

/**
 * The tags a user JWT of a role carries: `role:<role>` (so a client can tell which inbox space is its
 * own, see inboxFor) and, for a data plane, what its role template resolves (see TEMPLATE).
 */
export function roleTags(role: NatsRole, who: { region?: string; node?: string; cancel?: number }): string[] {
  if (role !== "data-plane") return [`role:${role}`];
  if (!who.region || !who.node || who.cancel === undefined) throw new Error("a data-plane user needs region, node and its cancel number");
  return [`role:${role}`, `region:${who.region}`, `node:${who.node}`, `cancel:${who.cancel}`];
}

/** The inbox prefix a user of `role` may subscribe under (the `name` is the user JWT's name). */
export function inboxFor(names: NatsNames, role: NatsRole, who: { name: string; region?: string; node?: string }): string {
  switch (role) {
    case "data-plane":
      return names.dataPlaneInbox(who.region ?? "", who.node ?? "");
    case "control-plane":
      return names.controlPlaneInbox(who.name);
    case "auditor":
      return names.auditorInbox(who.name);
    case "fleet-reader":
      return names.fleetReaderInbox(who.name);
  }
}

/** Reads the name and role tags from a `.creds` file's user JWT (no verification: the server does that). */
export function credsIdentity(creds: string): { name: string; role?: NatsRole; region?: string; node?: string } {
  const jwt = /-----BEGIN NATS USER JWT-----\s*([^\s]+)\s*------END NATS USER JWT------/.exec(creds)?.[1];
  if (!jwt) throw new Error("not a NATS credentials file (no user JWT)");
  const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { name?: string; nats?: { tags?: string[] } };
  const tag = (k: string) => claims.nats?.tags?.find((t) => t.startsWith(`${k}:`))?.slice(k.length + 1);
  const role = tag("role");
  return { name: claims.name ?? "", role: NATS_ROLES.includes(role as NatsRole) ? (role as NatsRole) : undefined, region: tag("region"), node: tag("node") };
}

