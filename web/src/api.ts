/**
 * The console's JSON API (same origin, session cookie sent by the browser). Every POST carries the
 * session's CSRF token; a refusal becomes an ApiError with the server's code and one-line message.
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

let csrfToken = "";
export function setCsrfToken(t: string): void {
  csrfToken = t;
}

async function call<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const res = await fetch(`/console/api/${path}`, {
    method,
    credentials: "same-origin",
    headers: method === "POST" ? { "content-type": "application/json", "x-csrf-token": csrfToken } : { accept: "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiError(res.status, data.error?.code ?? "internal", data.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

export const api = {
  get: <T>(path: string) => call<T>("GET", path),
  post: <T>(path: string, body: unknown) => call<T>("POST", path, body),
};

export async function logout(): Promise<void> {
  await fetch("/console/auth/logout", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", "x-csrf-token": csrfToken }, body: "{}" });
}

export interface Me {
  signedIn: boolean;
  issuers?: Array<{ name: string }>;
  subject?: string;
  issuer?: string;
  groups?: string[];
  name?: string | null;
  admin?: boolean;
  expiresAt?: string;
  csrfToken?: string;
}

export interface ActorView {
  subject: string;
  issuer: string;
  groups: string[];
}

export interface Approval {
  id: string;
  status: string;
  requester?: ActorView;
  binding?: { fingerprint: string; paramsHash: string; sessionId: string; resource: string };
  sql: string;
  statementClass: string;
  rule: string;
  policy: string;
  approvers: string[];
  requestedAt: string;
  expiresAt: string;
  decidedAt: string;
  decidedBy?: ActorView;
  reason: string;
  node: string;
  region: string;
  statementId: number;
  decidable: { approve: boolean; reject: boolean; why?: string };
}

export interface ApprovalContext {
  session?: { sessionId: string; resource: string; node: string; region: string; clientAddress: string; applicationName: string; clientUser: string; startedAt: string; statements: number };
  statement?: { params: Array<string | null>; protocol: string; tables: { read?: string[]; write?: string[] } };
  claims?: Record<string, unknown>;
}

export interface SessionSummary {
  sessionId: string;
  region: string;
  node: string;
  resource: string;
  clientAddress: string;
  identity: string;
  issuer: string;
  groups: string[];
  status: string;
  denyReason: string;
  endReason: string;
  startedAt: string;
  authenticatedAt: string;
  endedAt: string;
  statements: number;
  blocked: number;
  policyRevision: number;
  clientUser: string;
  applicationName: string;
}

export interface ReplayStatement {
  statementId: number;
  sql: string;
  params?: Array<string | null>;
  protocol: string;
  statementClass: string;
  tables: { read: string[]; write: string[] };
  decision: string;
  rule: string;
  policy?: string;
  reason?: string;
  outcome: string;
  decidedAt: string;
  offsetMs: number;
  sqlstate?: string;
  approval?: { id: string; approvers: string[]; timeoutMs: number; by?: string; verdict?: string; at?: string };
  completed?: { commandTag?: string; rows: number; durationMs: number; error?: { sqlstate: string; message: string }; at: string };
  result?: { columns: Array<{ name: string; masked?: boolean; maskStrategy?: string }>; values: Array<Array<string | null>>; rows: number; recorded: number; truncated: boolean };
}

export interface Replay {
  sessionId: string;
  started?: { at: string; clientAddress: string; resource: string; node: string; region: string; tls: { enabled: boolean; protocol?: string }; applicationName?: string; user?: string };
  authenticated?: { at: string; subject: string; issuer: string; groups: string[]; claims: Record<string, unknown>; expiresAt?: string };
  denied?: { at: string; stage: string; reason: string; message: string; sqlstate: string };
  ended?: { at: string; reason: string; durationMs: number; statements: number; bytesIn: number; bytesOut: number };
  statements: ReplayStatement[];
  events: number;
  policyRevisions: number[];
}

export interface FleetNode {
  node: string;
  region: string;
  version: string;
  snapshotRevision: number;
  connections: number;
  listen?: string;
  startedAt?: string;
  lastBeat?: string;
  ageMs?: number;
  stale: boolean;
  malformed?: boolean;
}

export interface PolicyRevision {
  revision: number;
  hash: string;
  appliedBy: string;
  appliedAt: string;
  sourcePath: string;
  changes: Array<{ kind: string; name: string; op: string }>;
  diff: string;
}
