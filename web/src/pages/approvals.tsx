/**
 * Approvals: pending requests first, each with everything needed to decide (the statement, its
 * masked parameters, who asks with which claims, from which session, under which rule, and how long
 * is left), and approve / reject with a required reason. Updates live (server-sent events).
 */
import { useRef, useState } from "preact/hooks";
import { api, ApiError, type Approval, type ApprovalContext, type Me } from "../api.ts";
import { useApi, useEvents, useNow } from "../hooks.ts";
import { countdown, when } from "../time.ts";
import { Badge, Claims, Groups, Loading, Notice, Sql, Value } from "../ui.tsx";

interface ListResponse {
  now: string;
  approvals: Approval[];
}

interface DetailResponse {
  approval: Approval;
  context?: ApprovalContext;
}

function DecisionForm({ a, onDone }: { a: Approval; onDone: (msg: string) => void }) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  // one command id per decision attempt: a retried click appends nothing twice
  const commandId = useRef<string>("");
  const id = `reason-${a.id}`;
  const decide = async (verdict: "approve" | "reject") => {
    setError("");
    if (!reason.trim()) {
      setError("Give a reason: it is recorded with the decision.");
      document.getElementById(id)?.focus();
      return;
    }
    commandId.current ||= crypto.randomUUID();
    setBusy(true);
    try {
      await api.post(`approvals/${encodeURIComponent(a.id)}/${verdict}`, { reason, commandId: commandId.current });
      commandId.current = "";
      onDone(`${verdict === "approve" ? "Approved" : "Rejected"} ${a.id}.`);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="decide" onSubmit={(e) => e.preventDefault()} aria-label={`Decide ${a.id}`}>
      <label for={id}>Reason (required)</label>
      <textarea id={id} name="reason" rows={2} required value={reason} onInput={(e) => setReason((e.target as HTMLTextAreaElement).value)} aria-invalid={error ? "true" : undefined} aria-describedby={error ? `${id}-error` : undefined} />
      {error && <p id={`${id}-error`} class="field-error" role="alert">{error}</p>}
      <div class="actions">
        <button type="button" class="button primary" disabled={busy} onClick={() => void decide("approve")}>
          Approve
        </button>
        <button type="button" class="button danger" disabled={busy} onClick={() => void decide("reject")}>
          Reject
        </button>
      </div>
    </form>
  );
}

function ApprovalCard({ a, me, skewMs, nonce, onDone }: { a: Approval; me: Me; skewMs: number; nonce: number; onDone: (msg: string) => void }) {
  const mine = a.requester?.subject === me.subject && a.requester?.issuer === me.issuer;
  const now = useNow();
  const detail = useApi<DetailResponse>(`approvals/${encodeURIComponent(a.id)}`, nonce);
  const ctx = detail.data?.context;
  const left = Date.parse(a.expiresAt) - (now + skewMs);
  const pending = a.status === "pending";
  return (
    <article class={`card approval ${pending ? "is-pending" : ""}`} aria-labelledby={`h-${a.id}`}>
      <header class="card-head">
        <h3 id={`h-${a.id}`}>
          <code>{a.id}</code> <Badge value={a.status} />
        </h3>
        {pending ? (
          <p class={`countdown ${left < 30_000 ? "soon" : ""}`}>
            Expires in {countdown(left)}
            <span class="muted"> (at {when(a.expiresAt)})</span>
          </p>
        ) : (
          <p class="muted">
            {a.status} {a.decidedAt ? when(a.decidedAt) : ""}
            {a.decidedBy ? ` by ${a.decidedBy.subject}` : ""}
            {a.reason ? `: “${a.reason}”` : ""}
          </p>
        )}
      </header>
      <Sql sql={a.sql} label={`Statement held by ${a.id}`} />
      <div class="grid">
        <section aria-label="Request">
          <h4>Request</h4>
          <dl class="facts">
            <dt>Rule</dt>
            <dd><code>{a.rule}</code>{a.policy ? <> (policy <code>{a.policy}</code>)</> : null}</dd>
            <dt>Class</dt>
            <dd>{a.statementClass}</dd>
            <dt>Approvers</dt>
            <dd><Groups groups={a.approvers} /></dd>
            <dt>Resource</dt>
            <dd>{a.binding?.resource}</dd>
            <dt>Requested</dt>
            <dd>{when(a.requestedAt)}</dd>
          </dl>
        </section>
        <section aria-label="Requester">
          <h4>Requester</h4>
          <dl class="facts">
            <dt>Identity</dt>
            <dd><code>{a.requester?.subject}</code> <span class="muted">({a.requester?.issuer})</span>{mine && <> <Badge value="info">your request</Badge></>}</dd>
            <dt>Groups</dt>
            <dd><Groups groups={a.requester?.groups ?? []} /></dd>
            <dt>Claims</dt>
            <dd>{ctx?.claims ? <Claims claims={ctx.claims} /> : <span class="muted">{detail.data ? "not recorded" : "loading…"}</span>}</dd>
          </dl>
        </section>
        <section aria-label="Session">
          <h4>Session</h4>
          <dl class="facts">
            <dt>Session</dt>
            <dd><a href={`#/sessions/${encodeURIComponent(a.binding?.sessionId ?? "")}`}><code>{a.binding?.sessionId}</code></a>, statement #{a.statementId}</dd>
            <dt>Node</dt>
            <dd>{a.region}/{a.node}</dd>
            {ctx?.session && (
              <>
                <dt>Client</dt>
                <dd>{ctx.session.clientAddress}{ctx.session.applicationName ? ` (${ctx.session.applicationName})` : ""}</dd>
              </>
            )}
          </dl>
        </section>
      </div>
      <section aria-label="Bound parameters">
        <h4>Bound parameters (as recorded, masked)</h4>
        {ctx?.statement?.params?.length ? (
          <table class="params">
            <thead>
              <tr><th scope="col">#</th><th scope="col">Value</th></tr>
            </thead>
            <tbody>
              {ctx.statement.params.map((p, i) => (
                <tr key={i}><td>${i + 1}</td><td><code><Value v={p} /></code></td></tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">{detail.data ? "none (simple query protocol, or no parameters)" : "loading…"}</p>
        )}
      </section>
      {pending && (a.decidable.approve ? (
        <DecisionForm a={a} onDone={onDone} />
      ) : (
        <p class="cannot" role="note">You cannot decide this request: {a.decidable.why}.</p>
      ))}
    </article>
  );
}

export function ApprovalsPage({ me }: { me: Me }) {
  const [all, setAll] = useState(false);
  const [nonce, setNonce] = useState(0);
  const [message, setMessage] = useState("");
  const list = useApi<ListResponse>(`approvals${all ? "?all=1" : ""}`, nonce);
  useEvents("approvals/events", ["changed"], () => setNonce((n) => n + 1));
  const skewMs = list.data ? Date.parse(list.data.now) - Date.now() : 0;
  const approvals = list.data?.approvals ?? [];
  const pending = approvals.filter((a) => a.status === "pending");
  const decided = approvals.filter((a) => a.status !== "pending");
  return (
    <>
      <div class="page-head">
        <h1>Approvals</h1>
        <label class="toggle">
          <input type="checkbox" checked={all} onChange={(e) => setAll((e.target as HTMLInputElement).checked)} /> Show decided requests
        </label>
      </div>
      <p class="lede">Statements held for a person's decision. You see the requests your groups ({(me.groups ?? []).join(", ") || "none"}) may decide, and your own.</p>
      <div aria-live="polite" class="live">{message && <Notice kind="info">{message}</Notice>}</div>
      {list.error && <Notice kind="error">{list.error}</Notice>}
      {!list.data && !list.error && <Loading />}
      {list.data && (
        <section aria-labelledby="pending-h">
          <h2 id="pending-h">Pending ({pending.length})</h2>
          {pending.length === 0 && <p class="empty">Nothing is waiting for a decision.</p>}
          {pending.map((a) => (
            <ApprovalCard key={a.id} a={a} me={me} skewMs={skewMs} nonce={nonce} onDone={(m) => { setMessage(m); setNonce((n) => n + 1); }} />
          ))}
        </section>
      )}
      {all && list.data && (
        <section aria-labelledby="decided-h">
          <h2 id="decided-h">Decided ({decided.length})</h2>
          {decided.map((a) => (
            <ApprovalCard key={a.id} a={a} me={me} skewMs={skewMs} nonce={nonce} onDone={setMessage} />
          ))}
        </section>
      )}
    </>
  );
}
