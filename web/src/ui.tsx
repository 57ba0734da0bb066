/** Small pieces every page uses. */
import type { ComponentChildren } from "preact";
import { tokenizeSql } from "./sql-tokens.ts";

export function Sql({ sql, label }: { sql: string; label?: string }) {
  return (
    <pre class="sql" aria-label={label ?? "SQL statement"} tabIndex={0}>
      <code>
        {tokenizeSql(sql).map((t, i) => (t.kind === "space" || t.kind === "op" || t.kind === "ident" ? t.text : <span key={i} class={`tok-${t.kind}`}>{t.text}</span>))}
      </code>
    </pre>
  );
}

const TONES: Record<string, string> = {
  pending: "warn", held: "warn", approve: "warn", pending_approval: "warn", active: "info", connecting: "info",
  approved: "ok", allowed: "ok", allow: "ok", completed: "ok", ok: "ok", ended: "muted",
  rejected: "bad", blocked: "bad", deny: "bad", denied: "bad", failed: "bad", expired: "muted", timeout: "bad", cancelled: "muted", stale: "bad",
};

export function Badge({ value, children }: { value: string; children?: ComponentChildren }) {
  return <span class={`badge badge-${TONES[value] ?? "muted"}`}>{children ?? value.replace(/_/g, " ")}</span>;
}

export function Notice({ kind, children }: { kind: "error" | "info"; children: ComponentChildren }) {
  return (
    <p class={`notice notice-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </p>
  );
}

export function Loading() {
  return <p class="muted" role="status">Loading…</p>;
}

export function Groups({ groups }: { groups: readonly string[] }) {
  if (!groups.length) return <span class="muted">no groups</span>;
  return (
    <span class="groups">
      {groups.map((g) => (
        <span key={g} class="chip">{g}</span>
      ))}
    </span>
  );
}

/** A masked-or-not value as recorded; NULL shown as such. */
export function Value({ v }: { v: string | null }) {
  return v === null ? <span class="null">NULL</span> : <>{v}</>;
}

/** A unified diff with added and removed lines marked (text, not colour alone). */
export function Diff({ text, label }: { text: string; label: string }) {
  if (!text.trim()) return <p class="muted">No textual change.</p>;
  return (
    <pre class="diff" aria-label={label} tabIndex={0}>
      {text.split("\n").map((l, i) => {
        const cls = l.startsWith("+++") || l.startsWith("---") ? "diff-file" : l.startsWith("+") ? "diff-add" : l.startsWith("-") ? "diff-del" : l.startsWith("@@") ? "diff-hunk" : "";
        return (
          <span key={i} class={cls}>
            {l}
            {"\n"}
          </span>
        );
      })}
    </pre>
  );
}

/** Recorded token claims, without the timestamps and one-time values nobody decides on. */
export function Claims({ claims }: { claims: Record<string, unknown> }) {
  const entries = Object.entries(claims).filter(([k]) => !["iat", "exp", "nbf", "jti", "nonce"].includes(k));
  if (!entries.length) return <span class="muted">none recorded</span>;
  return (
    <dl class="claims">
      {entries.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{Array.isArray(v) ? v.join(", ") : String(v)}</dd>
        </div>
      ))}
    </dl>
  );
}
