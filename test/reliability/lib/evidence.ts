/**
 * What a scenario compares the clients' ledger (load.ts) with: the statements the audit stream
 * holds (statement.allowed events naming a load marker), each session's hash chain, and the rows
 * the upstream database holds. Pure over what was read.
 */
import { SessionEventType, verifyChain, type CloudEvent, type StatementAllowedData } from "@sluice/shared/events";
import type { StoredEvent } from "../../e2e/audit-recording-support.js";

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
  /** events stored again: a sequence number their session already had on the stream */
  duplicateIds: number;
}

/**
 * The evidence folded one event at a time, in stream order (audit-scan.ts reads in bounded fetches):
 * per session only its last sequence and hash (the chain is checked as it goes, verifyChain from
 * where it stands), so memory grows with sessions and markers, not events. An event stored twice is a
 * sequence the session already has (the chain check then reports it too).
 */
export class EvidenceFold {
  private events = 0;
  private duplicateIds = 0;
  private readonly markers = new Map<string, number>();
  private readonly sessions = new Map<string, { seq: number; prev: string | undefined; ended: boolean; problem?: string }>();

  add(ev: CloudEvent): void {
    this.events++;
    if (ev.type === SessionEventType["statement.allowed"]) {
      const m = MARKER.exec((ev.data as StatementAllowedData).sql);
      if (m) this.markers.set(m[1]!, (this.markers.get(m[1]!) ?? 0) + 1);
    }
    let s = this.sessions.get(ev.subject);
    if (!s) {
      s = { seq: 0, prev: undefined, ended: false };
      this.sessions.set(ev.subject, s);
    }
    if (ev.type === SessionEventType["session.ended"]) s.ended = true;
    if (s.seq > 0 && (ev.sluicesessionseq ?? 0) <= s.seq) this.duplicateIds++;
    if (s.problem) return;
    const p = s.prev === undefined ? verifyChain([ev]) : verifyChain([ev], s.seq, s.prev);
    if (p) {
      s.problem = p.reason;
      return;
    }
    s.seq = ev.sluicesessionseq!;
    s.prev = ev.sluicehash!;
  }

  result(): StreamEvidence {
    const brokenChains = new Map<string, string>();
    let unended = 0;
    for (const [id, s] of this.sessions) {
      if (s.problem) brokenChains.set(id, s.problem);
      if (!s.ended) unended++;
    }
    return { events: this.events, sessions: this.sessions.size, markers: this.markers, brokenChains, unended, duplicateIds: this.duplicateIds };
  }
}

/** The evidence of events already in memory (tests of this room). */
export function streamEvidence(stored: readonly StoredEvent[]): StreamEvidence {
  const fold = new EvidenceFold();
  for (const s of stored) fold.add(s.ev);
  return fold.result();
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
