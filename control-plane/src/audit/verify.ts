import type { KeyObject } from "node:crypto";
import { GENESIS_HASH, hashEvent, verifyChain, type CloudEvent } from "@sluice/shared/events";
import { CHECKPOINT_GENESIS, checkpointHash, checkpointSignatureValid, keyIdOf, type Checkpoint } from "../sealer/checkpoint.js";
import { STREAM_GENESIS, messageDigest, streamChainStep } from "../sealer/stream-chain.js";
import type { AuditMessage } from "./audit-record.js";

export type ProblemKind =
  | "malformed"
  | "beginning-missing"
  | "stream-gap"
  | "stream-order"
  | "altered"
  | "chain-broken"
  | "missing"
  | "reordered"
  | "duplicate"
  | "unsealed"
  | "unpinned"
  | "checkpoint-signature"
  | "checkpoint-key"
  | "checkpoint-link"
  | "checkpoint-range"
  | "checkpoint-mismatch"
  | "checkpoint-beyond-stream";

/** One broken point. `streamSeq` orders problems: the first one is where the evidence stops being sound. */
export interface VerifyProblem {
  kind: ProblemKind;
  streamSeq: number;
  sessionId?: string;
  eventId?: string;
  sessionSeq?: number;
  checkpoint?: { firstSeq: number; lastSeq: number };
  reason: string;
}

/** The messages after the last checkpoint: nothing proves them yet (a cut or an addition there is invisible). */
export interface UnsealedTail {
  messages: number;
  events: number;
  fromSeq: number;
  toSeq: number;
  /** time of the oldest unsealed event (ISO), and how old it was when verified (when `now` was given) */
  oldest?: string;
  ageSeconds?: number;
}

export interface VerifyReport {
  ok: boolean;
  /** messages read */
  messages: number;
  /** events in them */
  events: number;
  sessions: number;
  checkpoints: number;
  /** the stream chain was checked from this stream sequence (1, or the first checkpoint boundary of a cut copy) */
  streamChainFrom: number | undefined;
  /** last stream sequence covered by a checkpoint that matched */
  sealedThrough: number;
  /** messages after the last matching checkpoint (not yet sealed) */
  unsealed: number;
  unsealedTail?: UnsealedTail;
  /**
   * "pinned": every checkpoint signature checked against the key the verifier brought; "server": against
   * the key the control plane reports (consistency, not proof); "unchecked": no key
   */
  signatures: "pinned" | "server" | "unchecked";
  firstProblem?: VerifyProblem;
  /** every problem found, in stream order (capped) */
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  /** the pinned sealer public key; without it signatures are not checked and the report is not ok */
  publicKey?: KeyObject;
  /** `publicKey` is the key the control plane itself reports rather than a pinned one (stream verify without --public-key) */
  keyFromServer?: boolean;
  /** cap on problems kept (default 100) */
  maxProblems?: number;
  /** when verified (ms since epoch): dates the unsealed tail */
  now?: number;
  /** unsealed messages whose oldest event is younger than this are tolerated (the sealer's interval); default 0: none */
  unsealedGraceMs?: number;
}

interface SessionState {
  seq: number;
  hash: string;
  /** set once the session's chain broke: later events only classify that break */
  broken?: { problem: VerifyProblem; expected: number };
}

function describeAt(seq: number, ev?: CloudEvent): string {
  return `stream seq ${seq}${ev ? `, session ${ev.subject}, event ${ev.id}` : ""}`;
}

/**
 * Recomputes everything the audit trail promises, one message at a time in stream order:
 *  - the copy or stream begins at stream seq 1 and its sequences are contiguous (a cut is never ok);
 *  - every session's hash chain from its first event (seq + prevhash + hash, verifyChain from
 *    shared/events), telling a missing sequence from a reordered one by whether the expected event
 *    shows up later;
 *  - the stream-wide chain (one link per message, over the digests of its events in order) against
 *    every checkpoint, and the checkpoints' own chain from the genesis and their signatures against
 *    the pinned key;
 *  - nothing after the last checkpoint: an unsealed tail is reported with its size and age.
 * Pure: no I/O, no clock. Feed it with `add`, then `finish`.
 */
export class AuditVerifier {
  private readonly problems: VerifyProblem[] = [];
  private readonly cpAt = new Map<number, Checkpoint>();
  private readonly cpBad = new Set<Checkpoint>();
  private readonly sealedCps = new Set<Checkpoint>();
  private readonly sessions = new Map<string, SessionState>();
  private lastSeq: number | undefined;
  private firstSeq: number | undefined;
  private head: string | undefined;
  private chainFrom: number | undefined;
  private sealed = 0;
  private messages = 0;
  private events = 0;
  private readonly max: number;
  private readonly all: Checkpoint[] = [];
  private prevCp: Checkpoint | undefined;
  private pinnedId: string | undefined;
  /** the unsealed messages so far: seq, events, oldest event time */
  private tail: Array<{ seq: number; events: number; time?: string }> = [];

  constructor(checkpoints: readonly Checkpoint[], private readonly o: VerifyOptions = {}) {
    this.max = o.maxProblems ?? 100;
    this.pinnedId = o.publicKey ? keyIdOf(o.publicKey) : undefined;
    for (const cp of checkpoints) this.registerCheckpoint(cp);
  }

  /** Checks a checkpoint on its own and against the previous one; remembers it for the chain comparison. */
  private registerCheckpoint(cp: Checkpoint): void {
    const prev = this.prevCp;
    const where = { streamSeq: cp.lastSeq, checkpoint: { firstSeq: cp.firstSeq, lastSeq: cp.lastSeq } };
    const label = `checkpoint [${cp.firstSeq}..${cp.lastSeq}]`;
    let bad = false;
    const flag = (kind: ProblemKind, reason: string) => {
      bad = true;
      this.report({ kind, ...where, reason: `${label}: ${reason}` });
    };
    if (this.o.publicKey) {
      if (cp.keyId !== this.pinnedId) flag("checkpoint-key", `signed by key ${cp.keyId}, not the pinned key ${this.pinnedId} (forged?)`);
      else if (!checkpointSignatureValid(cp, this.o.publicKey)) flag("checkpoint-signature", "signature does not verify against the pinned key (forged or altered)");
    }
    if (cp.count !== cp.lastSeq - cp.firstSeq + 1) flag("checkpoint-range", `count ${cp.count} does not match its range`);
    if (prev) {
      if (cp.firstSeq !== prev.lastSeq + 1) {
        flag("checkpoint-range", `does not follow checkpoint [${prev.firstSeq}..${prev.lastSeq}]`);
      }
      if (cp.prevCheckpointHash !== checkpointHash(prev)) {
        flag("checkpoint-link", `prevCheckpointHash does not match checkpoint [${prev.firstSeq}..${prev.lastSeq}] (a checkpoint was replaced or removed)`);
      }
    } else if (cp.firstSeq !== 1) {
      flag("checkpoint-range", "the first checkpoint does not start at stream seq 1 (earlier checkpoints are missing)");
    } else if (cp.prevCheckpointHash !== CHECKPOINT_GENESIS) {
      flag("checkpoint-link", "the first checkpoint of the stream does not start from the genesis hash");
    }
    if (bad) this.cpBad.add(cp);
    if (!this.cpAt.has(cp.lastSeq)) this.cpAt.set(cp.lastSeq, cp);
    this.all.push(cp);
    this.prevCp = cp;
  }

  /**
   * A checkpoint that arrives interleaved with the messages (right after the message that ends its
   * range, as AuditService.Read and the JSON-lines copy deliver them).
   */
  addCheckpoint(cp: Checkpoint): void {
    this.registerCheckpoint(cp);
    if (this.lastSeq !== undefined && cp.lastSeq === this.lastSeq) this.sealAt(cp.lastSeq);
  }

  private report(p: VerifyProblem): void {
    if (this.problems.length < this.max) this.problems.push(p);
  }

  add(m: AuditMessage): void {
    this.messages++;
    const events = m.events;
    const first = events?.[0];
    // 1. stream sequences: from 1, contiguous
    if (this.lastSeq === undefined) {
      this.firstSeq = m.seq;
      if (m.seq === 1) {
        this.head = STREAM_GENESIS;
        this.chainFrom = 1;
      } else {
        this.report({ kind: "beginning-missing", streamSeq: 1,
          reason: `the records begin at stream seq ${m.seq}: stream seq ${m.seq === 2 ? "1" : `1..${m.seq - 1}`} missing (a cut copy proves nothing about what was cut)` });
        // keep checking from a checkpoint boundary, to locate further problems
        const anchor = this.cpAt.get(m.seq - 1);
        if (anchor && !this.cpBad.has(anchor)) {
          this.head = anchor.chainHash;
          this.chainFrom = m.seq;
        }
      }
    } else if (m.seq !== this.lastSeq + 1) {
      if (m.seq <= this.lastSeq) {
        this.report({ kind: "stream-order", streamSeq: m.seq, sessionId: first?.subject, eventId: first?.id,
          reason: `${describeAt(m.seq, first)}: stream sequence goes back from ${this.lastSeq} (messages reordered or duplicated)` });
      } else {
        const missing = m.seq - 1 === this.lastSeq + 1 ? `${this.lastSeq + 1}` : `${this.lastSeq + 1}..${m.seq - 1}`;
        this.report({ kind: "stream-gap", streamSeq: this.lastSeq + 1, sessionId: first?.subject, eventId: first?.id,
          reason: `stream seq ${missing} missing (the message before ${describeAt(m.seq, first)})` });
      }
      this.head = undefined; // unanchored until the next checkpoint boundary
    }
    this.lastSeq = Math.max(this.lastSeq ?? 0, m.seq);

    // 2. the message itself
    if (!events) this.report({ kind: "malformed", streamSeq: m.seq, reason: `stream seq ${m.seq}: not a CloudEvents JSON batch` });
    this.events += events?.length ?? 0;
    this.tail.push({ seq: m.seq, events: events?.length ?? 0, time: first?.time ?? m.storedAt });

    // 3. the stream chain and the checkpoint that ends here
    if (this.head !== undefined) this.head = streamChainStep(this.head, m.seq, messageDigest(events, m.raw === undefined ? undefined : Buffer.from(m.raw, "utf8")));
    this.sealAt(m.seq);

    // 4. the session chains
    if (events) for (const ev of events) this.checkSession(m.seq, ev);
  }

  /** Compares the stream chain with the checkpoint that ends at `seq`, if one is known. */
  private sealAt(seq: number): void {
    const cp = this.cpAt.get(seq);
    if (!cp || this.sealedCps.has(cp)) return;
    this.sealedCps.add(cp);
    if (this.head !== undefined) {
      if (this.head !== cp.chainHash) {
        this.report({ kind: "checkpoint-mismatch", streamSeq: seq, checkpoint: { firstSeq: cp.firstSeq, lastSeq: cp.lastSeq },
          reason: `checkpoint [${cp.firstSeq}..${cp.lastSeq}]: the stream chain recomputed at seq ${seq} does not match (an event in the range was altered, removed, inserted or reordered)` });
      } else if (!this.cpBad.has(cp)) {
        this.sealed = cp.lastSeq;
        this.tail = [];
      }
    }
    if (!this.cpBad.has(cp)) {
      if (this.chainFrom === undefined) this.chainFrom = seq + 1;
      this.head = cp.chainHash;
    }
  }

  private checkSession(streamSeq: number, ev: CloudEvent): void {
    const id = ev.subject;
    const seq = ev.sluicesessionseq;
    const st = this.sessions.get(id);
    const at = { streamSeq, sessionId: id, eventId: ev.id, sessionSeq: seq };
    if (st?.broken) {
      if (seq === st.broken.expected && st.broken.problem.kind === "missing") {
        const p = st.broken.problem;
        p.kind = "reordered";
        p.reason = `stream seq ${p.streamSeq}, session ${id}, event ${p.eventId}: session sequence ${p.sessionSeq} arrives before ${seq}, which comes later at stream seq ${streamSeq} (reordered)`;
      }
      return;
    }
    if (typeof ev.sluicehash !== "string" || typeof seq !== "number") {
      const p: VerifyProblem = { ...at, kind: "altered", reason: `${describeAt(streamSeq, ev)}: event is not hash-chained (no sluicesessionseq/sluicehash)` };
      this.report(p);
      this.sessions.set(id, { seq: 0, hash: GENESIS_HASH, broken: { problem: p, expected: -1 } });
      return;
    }
    let state = st;
    if (!state) {
      if (seq > 1) {
        // a session whose chain starts past its first event: its beginning was cut (or never stored)
        const missing = seq === 2 ? "1" : `1..${seq - 1}`;
        const p: VerifyProblem = { ...at, kind: "missing",
          reason: `${describeAt(streamSeq, ev)}: the session begins at session sequence ${seq}: ${missing} missing` };
        this.report(p);
        if (hashEvent(ev) !== ev.sluicehash) this.report({ ...at, kind: "altered", reason: `${describeAt(streamSeq, ev)}: hash does not match the event content (altered)` });
        // follow the chain from here so later breaks are still found
        this.sessions.set(id, { seq, hash: ev.sluicehash });
        return;
      }
      state = { seq: 0, hash: GENESIS_HASH };
      this.sessions.set(id, state);
    }
    const problem = verifyChain([ev], state.seq, state.hash);
    if (!problem) {
      state.seq = seq;
      state.hash = ev.sluicehash;
      return;
    }
    let p: VerifyProblem;
    if (seq > state.seq + 1) {
      const missing = seq - 1 === state.seq + 1 ? `${state.seq + 1}` : `${state.seq + 1}..${seq - 1}`;
      p = { ...at, kind: "missing", reason: `${describeAt(streamSeq, ev)}: session sequence ${missing} missing (the session jumps from ${state.seq} to ${seq})` };
    } else if (seq <= state.seq) {
      p = { ...at, kind: "duplicate", reason: `${describeAt(streamSeq, ev)}: session sequence ${seq} appears again after ${state.seq} (duplicated or replayed)` };
    } else if (/altered/.test(problem.reason)) {
      p = { ...at, kind: "altered", reason: `${describeAt(streamSeq, ev)}: hash does not match the event content (altered)` };
    } else {
      p = { ...at, kind: "chain-broken", reason: `${describeAt(streamSeq, ev)}: prevhash does not match session event ${state.seq} (an earlier event was replaced)` };
    }
    this.report(p);
    state.broken = { problem: p, expected: state.seq + 1 };
  }

  /**
   * The messages past the end of the last checkpoint. (Messages under a checkpoint that failed are
   * not proven either, but that checkpoint's own problem names them.)
   */
  private unsealedTail(): UnsealedTail | undefined {
    const covered = Math.max(this.sealed, ...this.all.map((cp) => cp.lastSeq));
    const t = this.tail.filter((m) => m.seq > covered);
    if (t.length === 0) return undefined;
    const times = t.map((m) => m.time).filter((x): x is string => typeof x === "string" && !Number.isNaN(Date.parse(x)));
    const oldest = times.length ? times.reduce((a, b) => (Date.parse(a) <= Date.parse(b) ? a : b)) : undefined;
    const tail: UnsealedTail = { messages: t.length, events: t.reduce((n, m) => n + m.events, 0), fromSeq: t[0]!.seq, toSeq: t[t.length - 1]!.seq };
    if (oldest) tail.oldest = oldest;
    if (oldest && this.o.now !== undefined) tail.ageSeconds = Math.max(0, (this.o.now - Date.parse(oldest)) / 1000);
    return tail;
  }

  finish(): VerifyReport {
    const last = this.lastSeq ?? 0;
    for (const cp of this.all) {
      if (cp.lastSeq > last && this.firstSeq !== undefined && cp.firstSeq <= last + 1) {
        this.report({ kind: "checkpoint-beyond-stream", streamSeq: last + 1, checkpoint: { firstSeq: cp.firstSeq, lastSeq: cp.lastSeq },
          reason: `checkpoint [${cp.firstSeq}..${cp.lastSeq}] seals stream seqs up to ${cp.lastSeq}, but the records end at ${last} (events removed from the end)` });
      }
    }
    if (this.firstSeq === undefined && this.all.length > 0) {
      const cp = this.all[this.all.length - 1]!;
      this.report({ kind: "checkpoint-beyond-stream", streamSeq: 1, checkpoint: { firstSeq: cp.firstSeq, lastSeq: cp.lastSeq },
        reason: `checkpoints seal stream seqs up to ${cp.lastSeq}, but there are no records` });
    }
    const tail = this.unsealedTail();
    if (tail) {
      const grace = this.o.unsealedGraceMs ?? 0;
      const young = grace > 0 && tail.ageSeconds !== undefined && tail.ageSeconds * 1000 < grace;
      if (!young) {
        const age = tail.ageSeconds !== undefined ? `, the oldest ${tail.ageSeconds.toFixed(1)} s old` : tail.oldest ? `, the oldest from ${tail.oldest}` : "";
        this.report({ kind: "unsealed", streamSeq: tail.fromSeq,
          reason: `stream seq ${tail.fromSeq}..${tail.toSeq} (${tail.messages} message${tail.messages === 1 ? "" : "s"}, ${tail.events} events${age}) come after the last checkpoint: nothing proves them yet (events cut or added there would not show)` });
      }
    }
    if (!this.o.publicKey) {
      this.report({ kind: "unpinned", streamSeq: 0,
        reason: "no pinned sealer key (--public-key): anyone who can cut the records can re-sign checkpoints over the rest, so nothing is proven" });
    }
    // stable sort: by position, detection order within a position
    const problems = this.problems.map((p, i) => ({ p, i })).sort((a, b) => a.p.streamSeq - b.p.streamSeq || a.i - b.i).map((x) => x.p);
    const report: VerifyReport = {
      ok: problems.length === 0,
      messages: this.messages,
      events: this.events,
      sessions: this.sessions.size,
      checkpoints: this.all.length,
      streamChainFrom: this.chainFrom,
      sealedThrough: this.sealed,
      unsealed: tail?.messages ?? 0,
      signatures: !this.o.publicKey ? "unchecked" : this.o.keyFromServer ? "server" : "pinned",
      firstProblem: problems[0],
      problems,
    };
    if (tail) report.unsealedTail = tail;
    return report;
  }
}

export function verifyAudit(messages: Iterable<AuditMessage>, checkpoints: readonly Checkpoint[], o: VerifyOptions = {}): VerifyReport {
  const v = new AuditVerifier(checkpoints, o);
  for (const m of messages) v.add(m);
  return v.finish();
}

export async function verifyAuditStream(messages: AsyncIterable<AuditMessage>, checkpoints: readonly Checkpoint[], o: VerifyOptions = {}): Promise<VerifyReport> {
  const v = new AuditVerifier(checkpoints, o);
  for await (const m of messages) v.add(m);
  return v.finish();
}

/** One line for humans: what is wrong first, or what was proven. */
export function summarizeReport(r: VerifyReport): string {
  if (r.firstProblem) return `FAILED: ${r.firstProblem.reason}`;
  const tail = r.unsealedTail
    ? `; ${r.unsealedTail.messages} newest message(s) not yet sealed${r.unsealedTail.ageSeconds !== undefined ? ` (${r.unsealedTail.ageSeconds.toFixed(1)} s old)` : ""}`
    : "; everything sealed";
  const sig = r.signatures === "pinned" ? "signatures verified against the pinned key" : "signatures verified against the key the control plane reports (NOT pinned: pass --public-key)";
  return `ok: ${r.messages} messages, ${r.events} events, ${r.sessions} sessions, ${r.checkpoints} checkpoints; sealed through seq ${r.sealedThrough}${tail}; ${sig}`;
}
