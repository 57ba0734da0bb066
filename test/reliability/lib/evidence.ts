/**
 * What a scenario compares the clients' ledger (load.ts) with: the statements the audit stream
 * holds (statement.allowed events naming a load marker), each session's hash chain, and the rows
 * the upstream database holds. Pure over what was read.
 */
import { SessionEventType, verifyChain, type CloudEvent, type StatementAllowedData } from "@sluice/shared/events";
import type { StoredEvent } from "../../e2e/audit-recording-support.js";
import { bySession } from "../../e2e/audit-recording-support.js";

const MARKER = /'(w\d+-\d+)'/;

export interface StreamEvidence {
  events: number;
  sessions: number;
  /** marker → how many statement.allowed events name it */
  markers: Map<string, number>;
  /** sessions whose stored events are not a whole chain from seq 1 (id → the problem) */
  brokenChains: Map<string, string>;
  /** sessions that have no session.ended event (a crash ends a session without one) */
  unended: number;
  /** event ids stored more than once */
  duplicateIds: number;
}

export function streamEvidence(stored: readonly StoredEvent[]): StreamEvidence {
  const markers = new Map<string, number>();
  const ids = new Set<string>();
  let duplicateIds = 0;
  for (const s of stored) {
    if (ids.has(s.ev.id)) duplicateIds++;
    ids.add(s.ev.id);
    if (s.ev.type !== SessionEventType["statement.allowed"]) continue;
    const m = MARKER.exec((s.ev.data as StatementAllowedData).sql);
    if (m) markers.set(m[1]!, (markers.get(m[1]!) ?? 0) + 1);
  }
  const sessions = bySession(stored);
  const brokenChains = new Map<string, string>();
  let unended = 0;
  for (const [id, evs] of sessions) {
    const p = verifyChain(evs);
    if (p) brokenChains.set(id, p.reason);
    if (!evs.some((e: CloudEvent) => e.type === SessionEventType["session.ended"])) unended++;
  }
  return { events: stored.length, sessions: sessions.size, markers, brokenChains, unended, duplicateIds };
}

export interface AckComparison {
  acknowledged: number;
  /** acknowledged to a client, not on the stream */
  lostFromStream: string[];
  /** acknowledged to a client, not in the upstream's ledger table */
  lostFromDatabase: string[];
  /** on the stream more than once */
  duplicated: string[];
}

export function compareAcked(acked: readonly (readonly string[])[], ev: StreamEvidence, rows: ReadonlySet<string>): AckComparison {
  const lostFromStream: string[] = [];
  const lostFromDatabase: string[] = [];
  let acknowledged = 0;
  for (const list of acked) {
    for (const m of list) {
      acknowledged++;
      if (!ev.markers.has(m)) lostFromStream.push(m);
      if (!rows.has(m)) lostFromDatabase.push(m);
    }
  }
  const duplicated = [...ev.markers].filter(([, n]) => n > 1).map(([m]) => m);
  return { acknowledged, lostFromStream, lostFromDatabase, duplicated };
}
