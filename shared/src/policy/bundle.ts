/**
 * The policy bundle model (contract: "Policy bundle"). Pure types and constants; parsing and
 * validation live in parse-bundle.ts, evaluation in evaluate.ts. Both planes use this model: the
 * control plane validates and simulates with it, the data plane enforces with it.
 */

export const STATEMENT_CLASSES = ["read", "write", "ddl", "admin", "utility", "copy"] as const;
export type StatementClass = (typeof STATEMENT_CLASSES)[number];

/** Named risks a statement can carry, usable in `deny` and `requireApproval` next to classes. */
export const RISKS = [
  "delete-without-where",
  "update-without-where",
  "truncate",
  "drop-database",
  "drop-schema",
  "drop-table",
  "drop-role",
  "drop",
  "copy-program",
  "copy-file",
  "superuser-functions",
  "role-change",
  "dynamic-sql",
  "alter-system",
  "grant",
  // SET search_path / set_config('search_path', …): bare names stop meaning what they meant (also
  // refused, whatever the policy lists, under a policy with table patterns)
  "search-path",
  // SET session_replication_role: triggers and rules (audit triggers, cascades) stop firing
  "session-replication-role",
  // a change of a setting the classifier's reading of SQL depends on (sql/session-settings.ts):
  // always denied, whatever the policy says
  "parser-setting",
] as const;
export type Risk = (typeof RISKS)[number];

/**
 * What every connected identity may do without a class to name (contract: "Policy bundle"), by the
 * name the built-in rule carries (`implicit:<allowance>`). sql/client-baseline.ts says which
 * statements each covers.
 */
export const BASELINE_ALLOWANCES = ["transaction-control", "show", "session-setting", "cursor", "prepared-statement", "discard"] as const;
export type BaselineAllowance = (typeof BASELINE_ALLOWANCES)[number];

export const MASK_STRATEGIES = ["partial", "redact", "hash"] as const;
export type MaskStrategy = (typeof MASK_STRATEGIES)[number];

export const CLASSIFIERS = ["email", "credit-card", "iban", "us-ssn", "jwt", "aws-key", "private-key"] as const;
export type ClassifierName = (typeof CLASSIFIERS)[number];

export const UPSTREAM_TLS_MODES = ["disable", "require", "verify-full"] as const;
export type UpstreamTlsMode = (typeof UPSTREAM_TLS_MODES)[number];

/** A claim rule: all listed claims must equal (or, for arrays, include one of) the values. */
export interface GroupWhenRule {
  group: string;
  when: Record<string, string | string[]>;
}
/** Take groups from a claim (string or array of strings), optionally prefixed. */
export interface GroupClaimRule {
  claim: string;
  prefix?: string;
}
export type GroupRule = GroupWhenRule | GroupClaimRule;

export interface Jwks {
  keys: Array<Record<string, unknown>>;
}

export interface IssuerSpec {
  name: string;
  issuer: string;
  audience: string | string[];
  jwksUrl?: string;
  jwks?: Jwks;
  /**
   * `true`: the keys are found as a relying party finds them, through the issuer's OIDC discovery
   * document (`<issuer>/.well-known/openid-configuration`, its `jwks_uri`). An issuer block with
   * neither `jwksUrl` nor `jwks` means this too (normalizeBundle writes it out).
   */
  discovery?: boolean;
  /** algorithm allow-list; default RS256, ES256, EdDSA (never `none`, never HS*) */
  algorithms?: string[];
  groups: GroupRule[];
}

export interface UpstreamSpec {
  host: string;
  port: number;
  database: string;
  user: string;
  /** a reference, never the secret: `env:NAME` or `file:/path`; absent for trust auth */
  password?: string;
  /** `trust`: the upstream needs no password (then `password` must be absent); default `password` */
  auth?: "password" | "trust";
  tls?: UpstreamTlsMode;
  /** for verify-full: a CA bundle reference (`file:/path`) */
  ca?: string;
  /**
   * what resets a pooled connection before the next session gets it, instead of `DISCARD ALL` (for
   * servers without it); the data plane adds `DEALLOCATE ALL` for the statements it named itself
   */
  resetQuery?: string;
}

export interface ResourceSpec {
  name: string;
  upstream: UpstreamSpec;
}

export interface ApprovalSpec {
  approvers: string[];
  /** duration string like `10m`, `30s`, `1h` */
  timeout: string;
  /** names of `notifications.webhooks[]` told when this policy's statements are held and decided */
  notify?: string[];
}

export interface TablePatterns {
  /** `schema.table`, `table`, or glob with `*` (e.g. `public.*`) */
  allow?: string[];
  deny?: string[];
}

export interface PolicySpec {
  name: string;
  groups: string[];
  resources: string[];
  /**
   * Names of `issuers[]` whose tokens this policy applies to; absent = any trusted issuer. Groups
   * come from every issuer's claim rules, so an issuer that takes groups from a claim could mint a
   * group meant for another (e.g. a dev token claiming `deployers`); scoping closes that.
   */
  issuers?: string[];
  allow: StatementClass[];
  /** classes or risks */
  requireApproval?: string[];
  /** classes or risks */
  deny?: string[];
  tables?: TablePatterns;
  approval?: ApprovalSpec;
}

export interface CustomClassifier {
  name: string;
  /** JavaScript regular expression source */
  pattern: string;
}

export interface MaskingSpec {
  name?: string;
  resources: string[];
  /** `column`, `table.column` or `schema.table.column` */
  columns?: string[];
  /** Postgres type names (e.g. `inet`) whose values are always masked */
  types?: string[];
  classifiers?: string[];
  custom?: CustomClassifier[];
  strategy: MaskStrategy;
}

export const WEBHOOK_FORMATS = ["json", "slack"] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

/** What a webhook is told about: a statement held for approval, and its decision (approved, rejected, expired). */
export const WEBHOOK_EVENTS = ["requested", "decided"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** An approval webhook, sent by the control plane (never by a data plane). */
export interface WebhookSpec {
  name: string;
  /**
   * an https URL (plain http only on loopback), or a reference (`env:NAME` / `file:/path`) when the
   * URL is itself a secret, as a Slack incoming-webhook URL is
   */
  url: string;
  /** `json` (default): sluice's own body; `slack`: a Slack-compatible message (text + blocks) */
  format?: WebhookFormat;
  /** a reference (`env:NAME` / `file:/path`) to the HMAC-SHA256 signing secret, resolved on the control plane */
  secret: string;
  /** default: both */
  on?: WebhookEvent[];
}

export interface NotificationsSpec {
  webhooks: WebhookSpec[];
  /** webhooks told about every policy's approvals (a policy adds its own with `approval.notify`) */
  approvals?: string[];
}

export interface Bundle {
  issuers: IssuerSpec[];
  resources: ResourceSpec[];
  policies: PolicySpec[];
  masking: MaskingSpec[];
  /** groups that exist only through claim rules (e.g. `claim: groups`) declared so references can be checked */
  groups?: string[];
  /** approval notifications; absent = none */
  notifications?: NotificationsSpec;
}

/** The compiled bundle as stored in the `sluice_snapshots` KV bucket under key `policy`. */
export interface PolicySnapshot {
  /** monotonically increasing; names the snapshot (`sluicepolicyrev`) */
  revision: number;
  bundle: Bundle;
  /** sha-256 of the canonical JSON of `bundle` */
  hash: string;
  appliedBy: string;
  appliedAt: string;
}

export function emptyBundle(): Bundle {
  return { issuers: [], resources: [], policies: [], masking: [] };
}
