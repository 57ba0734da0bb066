import type { CloudEvent } from "@sluice/shared/events";
import {
  sessionEventName,
  type SessionAuthenticatedData,
  type SessionDeniedData,
  type SessionEndedData,
  type SessionStartedData,
  type StatementBlockedData,
  type StatementCompletedData,
  type StatementData,
  type StatementRejectedData,
} from "@sluice/shared/events";

/**
 * Maps sluice events to OCSF 1.x (contract: `sluice audit export --format ocsf`):
 *  - Authentication (3002, category 3 IAM): session.authenticated (Logon, success), session.denied
 *    (Logon, failure), session.ended (Logoff);
 *  - Datastore Activity (6005, category 6 Application Activity): one per statement, when its outcome is
 *    known (completed, blocked, or rejected by an approver);
 *  - Entity Management (3004, category 3 IAM): policy, issuer and resource changes from SLUICE_CONTROL.
 * Stateful only to carry the session's identity and endpoints onto its statement events. Pure.
 */
export const OCSF_VERSION = "1.1.0";
export const OCSF_PRODUCT = { name: "sluice", vendor_name: "sluice" } as const;

export const OcsfClass = { Authentication: 3002, EntityManagement: 3004, DatastoreActivity: 6005 } as const;

const CATEGORY: Record<number, { uid: number; name: string }> = {
  3002: { uid: 3, name: "Identity & Access Management" },
  3004: { uid: 3, name: "Identity & Access Management" },
  6005: { uid: 6, name: "Application Activity" },
};
const CLASS_NAME: Record<number, string> = { 3002: "Authentication", 3004: "Entity Management", 6005: "Datastore Activity" };

export const SEVERITY = { Informational: 1, Low: 2, Medium: 3 } as const;
export const STATUS = { Success: 1, Failure: 2 } as const;

export type OcsfEvent = Record<string, unknown> & {
  class_uid: number;
  category_uid: number;
  activity_id: number;
  type_uid: number;
  time: number;
  severity_id: number;
  status_id: number;
  metadata: { version: string; product: { name: string; vendor_name: string; version?: string }; uid: string } & Record<string, unknown>;
};

interface SessionContext {
  sessionId: string;
  node?: string;
  region?: string;
  resource?: string;
  clientAddress?: string;
  clientPort?: number;
  subject?: string;
  issuer?: string;
  groups?: string[];
}

const SEVERITY_NAME: Record<number, string> = { 1: "Informational", 2: "Low", 3: "Medium" };
const STATUS_NAME: Record<number, string> = { 1: "Success", 2: "Failure" };

/** Datastore Activity activity_id from the statement's AST kind (OCSF 1.x enum). */
export function datastoreActivity(kind: string | undefined, cls: string): { id: number; name: string } {
  switch (kind) {
    case "SelectStmt": return { id: 4, name: "Query" };
    case "InsertStmt": return { id: 5, name: "Write" };
    case "UpdateStmt": return { id: 2, name: "Update" };
    case "DeleteStmt":
    case "TruncateStmt":
    case "DropStmt":
    case "DropdbStmt": return { id: 7, name: "Delete" };
    case "CreateStmt":
    case "CreateTableAsStmt":
    case "IndexStmt":
    case "ViewStmt":
    case "CreatedbStmt":
    case "CreateSchemaStmt": return { id: 6, name: "Create" };
    case "CopyStmt": return cls === "write" ? { id: 5, name: "Write" } : { id: 1, name: "Read" };
  }
  if (cls === "read") return { id: 1, name: "Read" };
  if (cls === "write") return { id: 5, name: "Write" };
  return { id: 99, name: "Other" };
}

function entityActivity(eventName: string): { id: number; name: string } {
  if (/(^|_)(registered|trusted|created|requested)$/.test(eventName)) return { id: 1, name: "Create" };
  if (/(^|_)(retired|distrusted|deleted|removed|revoked)$/.test(eventName)) return { id: 4, name: "Delete" };
  return { id: 3, name: "Update" };
}

const CONTROL_TYPE = /^dev\.sluice\.control\.([a-z0-9_-]+)\.([a-z0-9_]+)\.v1$/;
/** aggregates whose changes are policy changes (3004); approvals are session-level evidence elsewhere */
const POLICY_AGGREGATES = new Set(["policy", "issuer", "resource"]);

export class OcsfMapper {
  private readonly sessions = new Map<string, SessionContext>();
  /** allowed statements waiting for their completion, per session and statement id */
  private readonly open = new Map<string, { ev: CloudEvent<StatementData> }>();

  constructor(private readonly o: { productVersion?: string } = {}) {}

  private base(ev: CloudEvent, classUid: number, activity: { id: number; name: string }, severity: number, status: number): OcsfEvent {
    const cat = CATEGORY[classUid]!;
    return {
      class_uid: classUid,
      class_name: CLASS_NAME[classUid],
      category_uid: cat.uid,
      category_name: cat.name,
      activity_id: activity.id,
      activity_name: activity.name,
      type_uid: classUid * 100 + activity.id,
      type_name: `${CLASS_NAME[classUid]}: ${activity.name}`,
      time: Date.parse(ev.time),
      severity_id: severity,
      severity: SEVERITY_NAME[severity],
      status_id: status,
      status: STATUS_NAME[status],
      metadata: {
        version: OCSF_VERSION,
        product: { ...OCSF_PRODUCT, ...(this.o.productVersion ? { version: this.o.productVersion } : {}) },
        uid: ev.id,
        original_time: ev.time,
        log_name: ev.source,
        ...(ev.sluicesessionseq !== undefined ? { sequence: ev.sluicesessionseq } : {}),
        correlation_uid: ev.subject,
      },
    };
  }

  private session(id: string): SessionContext {
    let s = this.sessions.get(id);
    if (!s) {
      s = { sessionId: id };
      this.sessions.set(id, s);
    }
    return s;
  }

  private user(s: SessionContext, subject = s.subject): Record<string, unknown> {
    return {
      name: subject ?? "unknown",
      uid: subject ?? "unknown",
      ...(s.issuer ? { domain: s.issuer } : {}),
      ...(s.groups ? { groups: s.groups.map((name) => ({ name })) } : {}),
      type_id: 99,
      type: "Machine identity",
    };
  }

  private srcEndpoint(s: SessionContext): Record<string, unknown> {
    if (!s.clientAddress) return { name: "unknown" };
    return { ip: s.clientAddress, ...(s.clientPort ? { port: s.clientPort } : {}) };
  }

  private dstEndpoint(s: SessionContext): Record<string, unknown> {
    return { hostname: s.node ?? "sluice", ...(s.region ? { zone: s.region } : {}), svc_name: s.resource ?? "unknown" };
  }

  /** Maps one (logical, de-chunked) event; returns 0..n OCSF events. */
  map(ev: CloudEvent): OcsfEvent[] {
    const name = sessionEventName(ev.type);
    if (!name) return this.mapControl(ev);
    const s = this.session(ev.subject);
    switch (name) {
      case "session.started": {
        const d = ev.data as SessionStartedData;
        Object.assign(s, { node: d.node, region: d.region, resource: d.resource, clientAddress: d.clientAddress, clientPort: d.clientPort });
        return [];
      }
      case "session.authenticated": {
        const d = ev.data as SessionAuthenticatedData;
        Object.assign(s, { subject: d.subject, issuer: d.issuer, groups: d.groups });
        return [this.auth(ev, s, { id: 1, name: "Logon" }, STATUS.Success, SEVERITY.Informational)];
      }
      case "session.denied": {
        const d = ev.data as SessionDeniedData;
        if (d.subject) Object.assign(s, { subject: d.subject, issuer: d.issuer, groups: d.groups });
        const o = this.auth(ev, s, { id: 1, name: "Logon" }, STATUS.Failure, SEVERITY.Medium);
        o.status_code = d.sqlstate;
        o.status_detail = `${d.stage}: ${d.reason}`;
        o.message = d.message;
        return [o];
      }
      case "session.ended": {
        const d = ev.data as SessionEndedData;
        const out = this.flushSession(ev.subject);
        const o = this.auth(ev, s, { id: 2, name: "Logoff" }, STATUS.Success, SEVERITY.Informational);
        o.status_detail = d.reason;
        out.push(o);
        this.sessions.delete(ev.subject);
        return out;
      }
      case "statement.allowed":
      case "statement.approval_requested": {
        const d = ev.data as StatementData;
        this.open.set(`${ev.subject}/${d.statementId}`, { ev: ev as CloudEvent<StatementData> });
        return [];
      }
      case "statement.approved":
        return [];
      case "statement.blocked": {
        const d = ev.data as StatementBlockedData;
        const o = this.statement(ev as CloudEvent<StatementData>, s, STATUS.Failure, SEVERITY.Medium);
        o.status_code = d.sqlstate;
        o.status_detail = `denied by rule ${d.rule}`;
        return [o];
      }
      case "statement.rejected": {
        const d = ev.data as StatementRejectedData;
        const key = `${ev.subject}/${d.statementId}`;
        const held = this.open.get(key);
        this.open.delete(key);
        if (!held) return [];
        const o = this.statement(held.ev, s, STATUS.Failure, SEVERITY.Medium, ev);
        o.status_code = d.sqlstate;
        o.status_detail = `approval ${d.approvalId} ${d.reason}${d.approver ? ` by ${d.approver}` : ""}`;
        return [o];
      }
      case "statement.completed": {
        const d = ev.data as StatementCompletedData;
        const key = `${ev.subject}/${d.statementId}`;
        const held = this.open.get(key);
        this.open.delete(key);
        if (!held) return [];
        const o = this.statement(held.ev, s, d.error ? STATUS.Failure : STATUS.Success, SEVERITY.Informational, ev);
        o.duration = d.durationMs;
        o.count = d.rows;
        if (d.commandTag) o.status_detail = d.commandTag;
        if (d.error) {
          o.status_code = d.error.sqlstate;
          o.status_detail = d.error.message;
        }
        return [o];
      }
      case "result.rows":
        return [];
    }
  }

  /** Statements whose completion never came (the session was cut off, or the range ended). */
  flush(): OcsfEvent[] {
    const out: OcsfEvent[] = [];
    for (const id of new Set([...this.open.keys()].map((k) => k.slice(0, k.lastIndexOf("/"))))) out.push(...this.flushSession(id));
    return out;
  }

  private flushSession(sessionId: string): OcsfEvent[] {
    const out: OcsfEvent[] = [];
    for (const [k, held] of this.open) {
      if (k.slice(0, k.lastIndexOf("/")) !== sessionId) continue;
      this.open.delete(k);
      const o = this.statement(held.ev, this.session(sessionId), STATUS.Success, SEVERITY.Informational);
      o.status_detail = "forwarded; no completion recorded";
      out.push(o);
    }
    return out;
  }

  private auth(ev: CloudEvent, s: SessionContext, activity: { id: number; name: string }, status: number, severity: number): OcsfEvent {
    return {
      ...this.base(ev, OcsfClass.Authentication, activity, severity, status),
      user: this.user(s),
      actor: { user: this.user(s) },
      src_endpoint: this.srcEndpoint(s),
      dst_endpoint: this.dstEndpoint(s),
      service: { name: s.resource ?? "unknown" },
      auth_protocol_id: 99,
      auth_protocol: "OIDC",
      is_remote: true,
      session: { uid: s.sessionId, ...(s.issuer ? { issuer: s.issuer } : {}) },
    };
  }

  private statement(ev: CloudEvent<StatementData>, s: SessionContext, status: number, severity: number, outcome?: CloudEvent): OcsfEvent {
    const d = ev.data;
    const kind = d.statements?.[0]?.kind;
    const tables = [...new Set([...(d.tables?.read ?? []), ...(d.tables?.write ?? [])])];
    const o: OcsfEvent = {
      ...this.base(ev, OcsfClass.DatastoreActivity, datastoreActivity(kind, d.class), severity, status),
      actor: { user: this.user(s), session: { uid: s.sessionId } },
      src_endpoint: this.srcEndpoint(s),
      dst_endpoint: this.dstEndpoint(s),
      database: { name: s.resource ?? "unknown", type_id: 1, type: "Relational" },
      type_id: 1,
      type: "Database",
      query_info: { query_string: d.sql, ...(d.params ? { data: { params: d.params } } : {}) },
      message: `${d.decision} by ${d.rule}`,
      unmapped: {
        statement_id: d.statementId,
        decision: d.decision,
        rule: d.rule,
        ...(d.policy ? { policy: d.policy } : {}),
        statement_class: d.class,
        policy_revision: ev.sluicepolicyrev,
        ...(outcome ? { outcome_event_uid: outcome.id } : {}),
      },
    };
    if (tables.length) {
      o.table = { name: tables[0] };
      if (tables.length > 1) (o.unmapped as Record<string, unknown>).tables = tables;
    }
    if (outcome) o.time = Date.parse(outcome.time);
    return o;
  }

  private mapControl(ev: CloudEvent): OcsfEvent[] {
    const m = CONTROL_TYPE.exec(ev.type);
    if (!m || !POLICY_AGGREGATES.has(m[1]!)) return [];
    const [, aggregate, eventName] = m as unknown as [string, string, string];
    const d = (ev.data ?? {}) as { actor?: { subject?: string; groups?: string[]; issuer?: string }; revision?: number; name?: string; hash?: string };
    let activity = entityActivity(eventName);
    if (aggregate === "policy" && d.revision === 1) activity = { id: 1, name: "Create" };
    const actorUser = {
      name: d.actor?.subject ?? "unknown",
      uid: d.actor?.subject ?? "unknown",
      ...(d.actor?.issuer ? { domain: d.actor.issuer } : {}),
      ...(d.actor?.groups ? { groups: d.actor.groups.map((name) => ({ name })) } : {}),
    };
    const id = ev.subject.includes("/") ? ev.subject.slice(ev.subject.indexOf("/") + 1) : ev.subject;
    return [
      {
        ...this.base(ev, OcsfClass.EntityManagement, activity, SEVERITY.Informational, STATUS.Success),
        actor: { user: actorUser },
        entity: {
          name: d.name ?? id,
          uid: ev.subject,
          type: aggregate,
          ...(d.revision !== undefined ? { version: String(d.revision) } : {}),
          ...(d.hash ? { data: { hash: d.hash } } : {}),
        },
        message: `${aggregate} ${eventName.replace(/_/g, " ")}`,
      },
    ];
  }
}
