/** Sessions: the read model's sessions, newest first, filtered by identity, resource, node, time and outcome. */
import { useState } from "preact/hooks";
import type { SessionSummary } from "../api.ts";
import { useApi } from "../hooks.ts";
import { when } from "../time.ts";
import { Badge, Loading, Notice } from "../ui.tsx";

const FILTERS = ["identity", "resource", "node", "since", "until", "decision", "status"] as const;

/** datetime-local values are local times; the API takes ISO instants. */
function toIso(local: string): string {
  const t = Date.parse(local);
  return Number.isNaN(t) ? "" : new Date(t).toISOString();
}

function toLocal(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function SessionsPage({ query }: { query: URLSearchParams }) {
  const [form, setForm] = useState<Record<string, string>>(() => {
    const f: Record<string, string> = {};
    for (const k of FILTERS) f[k] = k === "since" || k === "until" ? toLocal(query.get(k)) : (query.get(k) ?? "");
    return f;
  });
  const q = new URLSearchParams();
  for (const k of FILTERS) {
    const v = query.get(k);
    if (v) q.set(k, v);
  }
  const list = useApi<{ sessions: SessionSummary[] }>(`sessions?${q.toString()}`);
  const apply = (e: Event) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const k of FILTERS) {
      const v = k === "since" || k === "until" ? toIso(form[k] ?? "") : (form[k] ?? "").trim();
      if (v) next.set(k, v);
    }
    location.hash = `#/sessions?${next.toString()}`;
  };
  const field = (k: (typeof FILTERS)[number], label: string, type = "text") => (
    <div class="field">
      <label for={`f-${k}`}>{label}</label>
      <input id={`f-${k}`} type={type} value={form[k]} onInput={(e) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value })} />
    </div>
  );
  return (
    <>
      <h1>Sessions</h1>
      <form class="filters" onSubmit={apply} aria-label="Filter sessions">
        {field("identity", "Identity (subject)")}
        {field("resource", "Resource")}
        {field("node", "Node")}
        {field("since", "Started after", "datetime-local")}
        {field("until", "Started before", "datetime-local")}
        <div class="field">
          <label for="f-decision">Outcome</label>
          <select id="f-decision" value={form.decision} onChange={(e) => setForm({ ...form, decision: (e.target as HTMLSelectElement).value })}>
            <option value="">any</option>
            <option value="allow">a statement allowed</option>
            <option value="deny">something denied</option>
            <option value="approve">held for approval</option>
            <option value="approved">an approval granted</option>
            <option value="rejected">an approval rejected</option>
          </select>
        </div>
        <div class="field">
          <label for="f-status">Status</label>
          <select id="f-status" value={form.status} onChange={(e) => setForm({ ...form, status: (e.target as HTMLSelectElement).value })}>
            <option value="">any</option>
            <option value="active">active</option>
            <option value="ended">ended</option>
            <option value="denied">denied</option>
            <option value="connecting">connecting</option>
          </select>
        </div>
        <div class="field field-actions">
          <button type="submit" class="button primary">Apply filters</button>
        </div>
      </form>
      {list.error && <Notice kind="error">{list.error}</Notice>}
      {!list.data && !list.error && <Loading />}
      {list.data && (list.data.sessions.length === 0 ? (
        <p class="empty">No sessions match.</p>
      ) : (
        <div class="table-wrap">
          <table class="list">
            <caption class="sr-only">Sessions, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Session</th>
                <th scope="col">Started</th>
                <th scope="col">Identity</th>
                <th scope="col">Resource</th>
                <th scope="col">Node</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">Statements</th>
                <th scope="col" class="num">Blocked</th>
              </tr>
            </thead>
            <tbody>
              {list.data.sessions.map((s) => (
                <tr key={s.sessionId}>
                  <td><a href={`#/sessions/${encodeURIComponent(s.sessionId)}`}><code>{s.sessionId}</code></a></td>
                  <td>{when(s.startedAt)}</td>
                  <td>{s.identity || <span class="muted">–</span>}</td>
                  <td>{s.resource}</td>
                  <td>{s.region}/{s.node}</td>
                  <td><Badge value={s.status} /></td>
                  <td class="num">{s.statements}</td>
                  <td class="num">{s.blocked}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </>
  );
}
