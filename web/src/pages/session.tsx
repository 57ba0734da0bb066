/**
 * One session's replay: connection and identity, then every statement with its decision, approval,
 * timing and the masked result rows as recorded. A running session is followed live.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { Replay, ReplayStatement, SessionSummary } from "../api.ts";
import { useApi, useEvents } from "../hooks.ts";
import { ms, when } from "../time.ts";
import { Badge, Claims, Groups, Loading, Notice, Sql, Value } from "../ui.tsx";

function Result({ r, id }: { r: NonNullable<ReplayStatement["result"]>; id: number }) {
  return (
    <div class="table-wrap">
      <table class="rows">
        <caption>
          Result of #{id}: {r.rows} row{r.rows === 1 ? "" : "s"}
          {r.recorded < r.rows ? ` (${r.recorded} recorded${r.truncated ? ", capped" : ""})` : ""}
        </caption>
        <thead>
          <tr>
            {r.columns.map((c, i) => (
              <th key={i} scope="col">
                {c.name}
                {c.masked && <span class="masked-tag"> masked{c.maskStrategy ? ` (${c.maskStrategy})` : ""}</span>}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {r.values.map((row, i) => (
            <tr key={i}>{row.map((v, j) => <td key={j}><Value v={v} /></td>)}</tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Statement({ s }: { s: ReplayStatement }) {
  return (
    <li class="card stmt">
      <header class="card-head">
        <h3>
          #{s.statementId} <Badge value={s.outcome} /> <span class="muted small">+{ms(s.offsetMs)} · {s.protocol} · {s.statementClass}</span>
        </h3>
        <p class="muted small">{when(s.decidedAt)}</p>
      </header>
      <Sql sql={s.sql} label={`Statement ${s.statementId}`} />
      {s.params && s.params.length > 0 && (
        <p class="small">
          Parameters (masked):{" "}
          {s.params.map((p, i) => (
            <code key={i} class="param">${i + 1} = <Value v={p} /></code>
          ))}
        </p>
      )}
      <dl class="facts inline">
        <dt>Decision</dt>
        <dd><Badge value={s.decision} /> by <code>{s.rule}</code>{s.reason ? ` — ${s.reason}` : ""}{s.sqlstate ? ` (SQLSTATE ${s.sqlstate})` : ""}</dd>
        {s.approval && (
          <>
            <dt>Approval</dt>
            <dd>
              <code>{s.approval.id}</code> by <Groups groups={s.approval.approvers} />
              {s.approval.verdict ? <> — {s.approval.verdict}{s.approval.by ? ` by ${s.approval.by}` : ""} {s.approval.at ? `at ${when(s.approval.at)}` : ""}</> : " — waiting"}
            </dd>
          </>
        )}
        {s.completed && (
          <>
            <dt>Completed</dt>
            <dd>
              {s.completed.error ? `failed: ${s.completed.error.sqlstate} ${s.completed.error.message}` : `${s.completed.commandTag ?? "done"}, ${s.completed.rows} row${s.completed.rows === 1 ? "" : "s"}`} in {ms(s.completed.durationMs)}
            </dd>
          </>
        )}
      </dl>
      {s.result && <Result r={s.result} id={s.statementId} />}
    </li>
  );
}

export function SessionPage({ id }: { id: string }) {
  const [nonce, setNonce] = useState(0);
  const data = useApi<{ session: SessionSummary; replay: Replay }>(`sessions/${encodeURIComponent(id)}`, nonce);
  const running = data.data ? !data.data.replay.ended && !data.data.replay.denied : false;
  const [following, setFollowing] = useState(true);
  const timer = useRef<ReturnType<typeof setTimeout>>();
  // new events: re-read the replay, at most twice a second
  useEvents(running && following ? `sessions/${encodeURIComponent(id)}/follow` : undefined, ["event"], () => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      setNonce((n) => n + 1);
    }, 500);
  });
  useEffect(() => () => clearTimeout(timer.current), []);
  if (data.error && !data.data) return <><h1>Session <code>{id}</code></h1><Notice kind="error">{data.error}</Notice></>;
  if (!data.data) return <Loading />;
  const { session: s, replay: r } = data.data;
  return (
    <>
      <p><a href="#/sessions">← All sessions</a></p>
      <div class="page-head">
        <h1>Session <code>{s.sessionId}</code> <Badge value={s.status} /></h1>
        {running && (
          <label class="toggle">
            <input type="checkbox" checked={following} onChange={(e) => setFollowing((e.target as HTMLInputElement).checked)} /> Follow live
          </label>
        )}
      </div>
      <div class="grid">
        <section aria-label="Connection" class="card">
          <h2>Connection</h2>
          <dl class="facts">
            <dt>Resource</dt><dd>{s.resource}</dd>
            <dt>Node</dt><dd>{s.region}/{s.node}</dd>
            <dt>Client</dt><dd>{s.clientAddress}{r.started?.tls.enabled ? `, TLS ${r.started.tls.protocol ?? ""}` : ", no TLS"}{s.applicationName ? ` (${s.applicationName})` : ""}</dd>
            <dt>Started</dt><dd>{when(s.startedAt)}</dd>
            <dt>Ended</dt><dd>{r.ended ? `${when(r.ended.at)} (${r.ended.reason}, ${ms(r.ended.durationMs)})` : r.denied ? `refused at ${r.denied.stage}: ${r.denied.message}` : "still open"}</dd>
          </dl>
        </section>
        <section aria-label="Identity" class="card">
          <h2>Identity</h2>
          <dl class="facts">
            <dt>Subject</dt><dd><code>{s.identity || "–"}</code> <span class="muted">({s.issuer || "–"})</span></dd>
            <dt>Groups</dt><dd><Groups groups={s.groups} /></dd>
            <dt>Claims</dt>
            <dd>{r.authenticated ? <Claims claims={r.authenticated.claims} /> : "–"}</dd>
            <dt>Policy revision</dt><dd>{r.policyRevisions.join(", ") || "–"}</dd>
          </dl>
        </section>
      </div>
      <h2>Statements ({r.statements.length})</h2>
      {r.statements.length === 0 ? <p class="empty">No statements recorded.</p> : <ol class="stmts">{r.statements.map((st) => <Statement key={st.statementId} s={st} />)}</ol>}
    </>
  );
}
