/**
 * The only place NATS subject, stream and bucket names live (contract: "NATS layout").
 * Every name takes the optional prefix from config `nats.prefix` so tests and tenants can share one
 * server: streams/buckets get `<PREFIX>_` in front, subjects get `<prefix>.` in front.
 */
export interface NatsNames {
  readonly prefix: string;
  readonly controlStream: string;
  readonly auditStream: string;
  readonly checkpointStream: string;
  readonly snapshotBucket: string;
  readonly fleetBucket: string;
  /** KV bucket for leases (sealer leader election) and projection bookkeeping. */
  readonly leaseBucket: string;
  readonly snapshotKey: "policy";
  /** `sluice.control.<aggregate>.<id>` */
  controlSubject(aggregate: string, id: string): string;
  /** wildcard over all control subjects */
  readonly controlAll: string;
  /** wildcard over every instance of one aggregate: `sluice.control.<aggregate>.*` */
  controlAggregateFilter(aggregate: string): string;
  /** core-NATS request/reply subject: data planes ask the control plane to open an approval request */
  readonly approvalRequestSubject: string;
  /**
   * core-NATS request/reply subject `sluice.approvals.cancel.<node>`: the node cancels a request it
   * filed whose statement will never run. The node is in the subject so a permission can pin each
   * node to its own (the control plane then knows who sent a cancel without trusting the body).
   */
  approvalCancelSubject(node: string): string;
  /** every node's cancel subject (the control plane's queue subscription) */
  readonly approvalCancelAll: string;
  /**
   * `sluice.audit.<region>.<node>.<lane>`: one publisher lane of a node (contract: batches), e.g.
   * lane `<boot id>-<n>`. Every event of a session goes through one lane.
   */
  auditSubject(region: string, node: string, lane: string): string;
  readonly auditAll: string;
  /**
   * `sluice.audit.<region>.<node>.>`: every lane of one node. The only audit subjects the node may
   * publish to (contract: permissions), and a consumer filter for one node's events.
   */
  auditNodeFilter(region: string, node: string): string;
  /** `sluice.checkpoint.<stream>` */
  checkpointSubject(stream: string): string;
  readonly checkpointAll: string;
  /** core-NATS subject the data planes listen on for cancel routing */
  cancelSubject(node: string): string;
  /**
   * Reply-subject prefixes per client role (nats.js `inboxPrefix`). Each role, and each data-plane
   * node, gets its own inbox space so its NATS user may subscribe to its own replies only, never to
   * another client's (least privilege: deploy/nats, nats-permissions.ts).
   */
  dataPlaneInbox(region: string, node: string): string;
  controlPlaneInbox(node: string): string;
  auditorInbox(user: string): string;
  fleetReaderInbox(user: string): string;
  /**
   * The same subjects over RAW tokens, for permission lists: wildcards (`*`) and nats-server template
   * placeholders (`{{tag(node)}}`) pass through unencoded. Never give these a value from a client.
   */
  readonly patterns: {
    /** `sluice.audit.<region>.<node>.>`: every lane of one node */
    auditLanes(region: string, node: string): string;
    cancel(node: string): string;
    approvalCancel(node: string): string;
    dataPlaneInbox(region: string, node: string): string;
    controlPlaneInbox(node: string): string;
    auditorInbox(user: string): string;
    fleetReaderInbox(user: string): string;
  };
  /** inverse of controlSubject; undefined when the subject is not a control subject */
  parseControlSubject(subject: string): { aggregate: string; id: string } | undefined;
  parseAuditSubject(subject: string): { region: string; node: string; lane: string } | undefined;
}

/** The JetStream stream behind a KV bucket (nats KV convention). */
export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Subject tokens must not contain '.', '*', '>' or whitespace; ids are encoded to be safe. */
export function subjectToken(s: string): string {
  if (TOKEN.test(s)) return s;
  return "~" + Buffer.from(s, "utf8").toString("base64url");
}

export function decodeSubjectToken(t: string): string {
  return t.startsWith("~") ? Buffer.from(t.slice(1), "base64url").toString("utf8") : t;
}

export function natsNames(prefix = ""): NatsNames {
  if (prefix && !TOKEN.test(prefix)) {
    throw new Error(`nats.prefix must match ${TOKEN.source}, got ${JSON.stringify(prefix)}`);
  }
  const S = prefix ? `${prefix.toUpperCase()}_` : "";
  const s = prefix ? `${prefix}.` : "";
  const b = prefix ? `${prefix}_` : "";
  const ctl = `${s}sluice.control`;
  const aud = `${s}sluice.audit`;
  const cp = `${s}sluice.checkpoint`;
  const inbox = `_INBOX.${prefix || "sluice"}`;
  const raw: NatsNames["patterns"] = {
    auditLanes: (region, node) => `${aud}.${region}.${node}.>`,
    cancel: (node) => `${s}sluice.cancel.${node}`,
    approvalCancel: (node) => `${s}sluice.approvals.cancel.${node}`,
    dataPlaneInbox: (region, node) => `${inbox}.dp.${region}.${node}`,
    controlPlaneInbox: (node) => `${inbox}.cp.${node}`,
    auditorInbox: (user) => `${inbox}.auditor.${user}`,
    fleetReaderInbox: (user) => `${inbox}.fleet.${user}`,
  };
  return {
    prefix,
    controlStream: `${S}SLUICE_CONTROL`,
    auditStream: `${S}SLUICE_AUDIT`,
    checkpointStream: `${S}SLUICE_CHECKPOINTS`,
    snapshotBucket: `${b}sluice_snapshots`,
    fleetBucket: `${b}sluice_fleet`,
    leaseBucket: `${b}sluice_leases`,
    snapshotKey: "policy",
    controlSubject: (aggregate, id) => `${ctl}.${subjectToken(aggregate)}.${subjectToken(id)}`,
    controlAll: `${ctl}.>`,
    controlAggregateFilter: (aggregate) => `${ctl}.${subjectToken(aggregate)}.*`,
    approvalRequestSubject: `${s}sluice.approvals.request`,
    approvalCancelSubject: (node) => raw.approvalCancel(subjectToken(node)),
    approvalCancelAll: raw.approvalCancel("*"),
    auditSubject: (region, node, lane) => `${aud}.${subjectToken(region)}.${subjectToken(node)}.${subjectToken(lane)}`,
    auditAll: `${aud}.>`,
    auditNodeFilter: (region, node) => `${aud}.${subjectToken(region)}.${subjectToken(node)}.>`,
    checkpointSubject: (stream) => `${cp}.${subjectToken(stream)}`,
    checkpointAll: `${cp}.>`,
    cancelSubject: (node) => raw.cancel(subjectToken(node)),
    dataPlaneInbox: (region, node) => raw.dataPlaneInbox(subjectToken(region), subjectToken(node)),
    controlPlaneInbox: (node) => raw.controlPlaneInbox(subjectToken(node)),
    auditorInbox: (user) => raw.auditorInbox(subjectToken(user)),
    fleetReaderInbox: (user) => raw.fleetReaderInbox(subjectToken(user)),
    patterns: raw,
    parseControlSubject(subject) {
      if (!subject.startsWith(ctl + ".")) return undefined;
      const parts = subject.slice(ctl.length + 1).split(".");
      if (parts.length !== 2) return undefined;
      return { aggregate: decodeSubjectToken(parts[0]!), id: decodeSubjectToken(parts[1]!) };
    },
    parseAuditSubject(subject) {
      if (!subject.startsWith(aud + ".")) return undefined;
      const parts = subject.slice(aud.length + 1).split(".");
      if (parts.length !== 3) return undefined;
      return {
        region: decodeSubjectToken(parts[0]!),
        node: decodeSubjectToken(parts[1]!),
        lane: decodeSubjectToken(parts[2]!),
      };
    },
  };
}
