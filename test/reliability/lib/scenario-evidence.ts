/**
 * The end of a scenario, the same everywhere: read the audit stream and the upstream's ledger table,
 * compare them with what the clients saw succeed, and put the figures and checks in the report.
 */
import type { Load } from "./load.js";
import { percentile } from "./load.js";
import type { CloudEvent } from "@sluice/shared/events";
import { compareAcked, EvidenceFold, type AckComparison, type StreamEvidence } from "./evidence.js";
import type { ReliabilityStack } from "./reliability-stack.js";
import type { ScenarioReport } from "./scenario-report.js";

const sample = (xs: readonly string[]) => (xs.length ? `${xs.length}: ${xs.slice(0, 8).join(", ")}${xs.length > 8 ? ", …" : ""}` : undefined);

export async function ledgerRows(s: ReliabilityStack): Promise<Set<string>> {
  return new Set((await s.direct("SELECT marker FROM ledger")).rows.map((r: { marker: string }) => r.marker));
}

export async function recordEvidence(
  r: ScenarioReport,
  s: ReliabilityStack,
  load: Load,
  o: { wholeChains: boolean; database?: boolean; /** sees every event of the same pass (a scenario's own checks) */ visit?: (ev: CloudEvent) => void },
): Promise<{ ev: StreamEvidence; cmp: AckComparison }> {
  const fold = new EvidenceFold();
  const scanStarted = Date.now();
  const scan = await s.scanAudit((e) => {
    fold.add(e);
    o.visit?.(e);
  });
  const ev = fold.result();
  r.figure("audit stream read: messages in bounded fetches (time)", `${scan.messages} in ${scan.fetches} fetches (${((Date.now() - scanStarted) / 1000).toFixed(1)} s)`);
  const rows = o.database === false ? new Set<string>() : await ledgerRows(s);
  const cmp = compareAcked(load.acked, ev, rows);
  r.figure("statements acknowledged to clients", cmp.acknowledged);
  r.figure("load statements on the stream", ev.markers.size);
  r.figure("acknowledged but missing from the stream", cmp.lostFromStream.length);
  r.figure("statements in doubt (connection broke before an answer)", load.inDoubt);
  r.figure("client sessions affected", `${load.affected.size} of ${load.o.workers} workers`);
  r.figure("client connections opened", load.connects);
  r.figure("sessions on the stream", ev.sessions);
  r.figure("events on the stream", ev.events);
  if (load.latenciesMs.length) {
    r.figure("statement latency p50 (ms)", percentile(load.latenciesMs, 50));
    r.figure("statement latency p99 (ms)", percentile(load.latenciesMs, 99));
  }
  r.clientErrors(load.errorsBy());
  r.check("every result a client got was its own statement's", load.wrongResults === 0, load.wrongExamples.join(", ") || undefined);
  r.check("every statement acknowledged to a client is on the audit stream", cmp.lostFromStream.length === 0, sample(cmp.lostFromStream));
  if (o.database !== false) r.check("every statement acknowledged to a client is in the upstream database", cmp.lostFromDatabase.length === 0, sample(cmp.lostFromDatabase));
  r.check("no statement or event is on the stream twice", cmp.duplicated.length === 0 && ev.duplicateIds === 0, sample(cmp.duplicated) ?? (ev.duplicateIds ? `${ev.duplicateIds} event ids twice` : undefined));
  if (o.wholeChains) {
    r.check("every session's hash chain on the stream is whole", ev.brokenChains.size === 0, sample([...ev.brokenChains].map(([id, p]) => `${id}: ${p}`)));
  }
  return { ev, cmp };
}

/** Checks that every error the clients saw is one of `allowed`; returns the others. */
export function onlyErrors(r: ScenarioReport, load: Load, allowed: readonly string[], what: string): void {
  const other = Object.entries(load.errorsBy()).filter(([code]) => !allowed.includes(code));
  r.check(what, other.length === 0, other.length ? other.map(([c, n]) => `${c} ×${n}`).join(", ") : undefined);
}
