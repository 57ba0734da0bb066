/** Policy: the current bundle, its history with diffs, and a simulator (SQL + claims or groups → decision). */
import { useState } from "preact/hooks";
import { api, ApiError, type PolicyRevision } from "../api.ts";
import { useApi } from "../hooks.ts";
import { when } from "../time.ts";
import { Badge, Diff, Loading, Notice } from "../ui.tsx";

interface Snapshot {
  revision: number;
  hash: string;
  appliedBy: string;
  appliedAt: string;
  sourcePath: string;
  bundleYaml: string;
}

interface SimResult {
  revision: number;
  decision: string;
  rule: string;
  policy: string | null;
  reason: string;
  approval: { approvers: string[]; timeoutMs: number } | null;
  groups: string[];
  issuer: string | null;
  parseError: string | null;
  statements: Array<{ text: string; class: string; decision: string; rule: string; tables: { read: string[]; write: string[] } }>;
}

function Simulator() {
  const [f, setF] = useState({ resource: "", sql: "", mode: "groups", groups: "", claims: "", issuer: "" });
  const [res, setRes] = useState<SimResult | undefined>();
  const [error, setError] = useState("");
  const run = async (e: Event) => {
    e.preventDefault();
    setError("");
    try {
      setRes(
        await api.post<SimResult>("policy/simulate", {
          resource: f.resource,
          sql: f.sql,
          issuer: f.issuer,
          ...(f.mode === "claims" ? { claims: f.claims } : { groups: f.groups }),
        }),
      );
    } catch (err) {
      setRes(undefined);
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value });
  return (
    <section aria-labelledby="sim-h" class="card">
      <h2 id="sim-h">Simulate a statement</h2>
      <form onSubmit={run} class="sim">
        <div class="field">
          <label for="sim-resource">Resource</label>
          <input id="sim-resource" required value={f.resource} onInput={set("resource")} />
        </div>
        <div class="field">
          <label for="sim-sql">SQL</label>
          <textarea id="sim-sql" rows={3} required value={f.sql} onInput={set("sql")} />
        </div>
        <fieldset>
          <legend>Identity</legend>
          <label><input type="radio" name="mode" value="groups" checked={f.mode === "groups"} onChange={set("mode")} /> Groups</label>
          <label><input type="radio" name="mode" value="claims" checked={f.mode === "claims"} onChange={set("mode")} /> Token claims (JSON)</label>
        </fieldset>
        {f.mode === "groups" ? (
          <div class="field">
            <label for="sim-groups">Groups (comma-separated)</label>
            <input id="sim-groups" value={f.groups} onInput={set("groups")} />
          </div>
        ) : (
          <div class="field">
            <label for="sim-claims">Claims</label>
            <textarea id="sim-claims" rows={3} value={f.claims} onInput={set("claims")} placeholder='{"iss": "…", "sub": "…", "repository": "acme/orders"}' />
          </div>
        )}
        <div class="field">
          <label for="sim-issuer">Issuer name (optional)</label>
          <input id="sim-issuer" value={f.issuer} onInput={set("issuer")} />
        </div>
        <button type="submit" class="button primary">Simulate</button>
      </form>
      <div aria-live="polite">
        {error && <Notice kind="error">{error}</Notice>}
        {res && (
          <div class="sim-result">
            <p>
              <Badge value={res.decision} /> by <code>{res.rule}</code> (revision {res.revision}) — {res.reason}
            </p>
            {res.approval && <p>Approval by {res.approval.approvers.join(", ")} within {Math.round(res.approval.timeoutMs / 1000)} s.</p>}
            <p class="small muted">Groups: {res.groups.join(", ") || "none"}{res.issuer ? `; issuer ${res.issuer}` : ""}</p>
            {res.statements.length > 1 && (
              <ol class="small">
                {res.statements.map((s, i) => <li key={i}><code>{s.text}</code>: {s.class}, {s.decision} by {s.rule}</li>)}
              </ol>
            )}
          </div>
        )}
      </div>
    </section>
  );
}

export function PolicyPage() {
  const cur = useApi<{ snapshot: Snapshot | null }>("policy");
  const hist = useApi<{ revisions: PolicyRevision[] }>("policy/history?limit=50");
  const [open, setOpen] = useState<number | undefined>();
  return (
    <>
      <h1>Policy</h1>
      {cur.error && <Notice kind="error">{cur.error}</Notice>}
      {!cur.data && !cur.error && <Loading />}
      {cur.data && (cur.data.snapshot ? (
        <section aria-labelledby="cur-h" class="card">
          <h2 id="cur-h">Current bundle: revision {cur.data.snapshot.revision}</h2>
          <p class="muted small">
            applied {when(cur.data.snapshot.appliedAt)} by {cur.data.snapshot.appliedBy} from {cur.data.snapshot.sourcePath || "–"}; hash <code>{cur.data.snapshot.hash.slice(0, 16)}</code>
          </p>
          <pre class="yaml" tabIndex={0} aria-label="Current policy bundle (YAML)">{cur.data.snapshot.bundleYaml}</pre>
        </section>
      ) : (
        <p class="empty">No policy applied yet.</p>
      ))}
      {cur.data && <Simulator />}
      <section aria-labelledby="hist-h">
        <h2 id="hist-h">History</h2>
        {hist.error && <Notice kind="error">{hist.error}</Notice>}
        {hist.data && (
          <ol class="history" reversed>
            {hist.data.revisions.map((r) => (
              <li key={r.revision} class="card">
                <h3>
                  <button type="button" class="link" aria-expanded={open === r.revision} onClick={() => setOpen(open === r.revision ? undefined : r.revision)}>
                    Revision {r.revision}
                  </button>{" "}
                  <span class="muted small">{when(r.appliedAt)} by {r.appliedBy}</span>
                </h3>
                <p class="small">
                  {r.changes.length ? r.changes.map((c, i) => <span key={i} class="chip">{c.op} {c.kind} {c.name}</span>) : <span class="muted">no item changed</span>}
                </p>
                {open === r.revision && <Diff text={r.diff} label={`Changes in revision ${r.revision}`} />}
              </li>
            ))}
          </ol>
        )}
      </section>
    </>
  );
}
