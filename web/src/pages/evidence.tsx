/** Evidence: the sealer's last signed checkpoint, and a verification of the whole audit stream on request. */
import { useState } from "preact/hooks";
import { api, ApiError } from "../api.ts";
import { useApi } from "../hooks.ts";
import { ms, when } from "../time.ts";
import { Badge, Loading, Notice } from "../ui.tsx";

interface Sealer {
  keyId: string;
  publicKeyPem: string;
  leader: boolean;
  sealedThrough: number;
  lastCheckpoint: { stream: string; firstSeq: number; lastSeq: number; count: number; chainHash: string; at: string; keyId: string; signature: string } | null;
}

interface Report {
  ok: boolean;
  /** stream messages (each a batch of events) and the events in them */
  messages: number;
  events: number;
  sessions: number;
  checkpoints: number;
  sealedThrough: number;
  unsealed: number;
  signatures: string;
  firstProblem?: { kind: string; streamSeq: number; reason: string };
  problems: Array<{ kind: string; streamSeq: number; reason: string }>;
  durationMs: number;
  verifiedAt: string;
}

export function EvidencePage() {
  const sealer = useApi<Sealer>("evidence");
  const [report, setReport] = useState<Report | undefined>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const verify = async () => {
    setBusy(true);
    setError("");
    try {
      setReport(await api.get<Report>("evidence/verify"));
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  const cp = sealer.data?.lastCheckpoint;
  return (
    <>
      <h1>Evidence</h1>
      <p class="lede">The audit stream is hash-chained per session and sealed by Ed25519-signed checkpoints. Verification here runs the same checks as <code>sluice audit verify</code>.</p>
      {sealer.error && <Notice kind="error">{sealer.error}</Notice>}
      {!sealer.data && !sealer.error && <Loading />}
      {sealer.data && (
        <section aria-labelledby="cp-h" class="card">
          <h2 id="cp-h">Last signed checkpoint</h2>
          {cp ? (
            <dl class="facts">
              <dt>Covers stream sequence</dt><dd>{cp.firstSeq} – {cp.lastSeq}</dd>
              <dt>Events sealed</dt><dd>{cp.count}</dd>
              <dt>Cut at</dt><dd>{when(cp.at)}</dd>
              <dt>Chain hash</dt><dd><code class="wrap">{cp.chainHash}</code></dd>
              <dt>Signature</dt><dd><code class="wrap">{cp.signature}</code></dd>
              <dt>Signing key</dt><dd><code>{sealer.data.keyId}</code></dd>
              <dt>Sealed through</dt><dd>{sealer.data.sealedThrough}</dd>
            </dl>
          ) : (
            <p class="empty">No checkpoint yet (the sealer writes one every few seconds while events arrive).</p>
          )}
        </section>
      )}
      <section aria-labelledby="verify-h" class="card">
        <h2 id="verify-h">Verify the stream</h2>
        <button type="button" class="button primary" disabled={busy} onClick={() => void verify()}>
          {busy ? "Verifying…" : "Verify now"}
        </button>
        <div aria-live="polite">
          {error && <Notice kind="error">{error}</Notice>}
          {report && (
            <div class="report">
              <p>
                <Badge value={report.ok ? "ok" : "failed"}>{report.ok ? "verified" : "broken"}</Badge> {report.messages} messages ({report.events} events), {report.sessions} sessions, {report.checkpoints} checkpoints; sealed through {report.sealedThrough}, {report.unsealed} not yet sealed; signatures {report.signatures} ({ms(report.durationMs)}, {when(report.verifiedAt)})
              </p>
              {report.firstProblem && (
                <Notice kind="error">
                  First problem at stream sequence {report.firstProblem.streamSeq} ({report.firstProblem.kind}): {report.firstProblem.reason}
                </Notice>
              )}
            </div>
          )}
        </div>
      </section>
    </>
  );
}
