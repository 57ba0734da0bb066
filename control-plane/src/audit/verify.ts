import type { KeyObject } from "node:crypto";
import { GENESIS_HASH, hashEvent, verifyChain, type CloudEvent } from "@sluice/shared/events";
import { CHECKPOINT_GENESIS, checkpointHash, checkpointSignatureValid, keyIdOf, type Checkpoint } from "../sealer/checkpoint.js";
import { STREAM_GENESIS, eventDigest, streamChainStep } from "../sealer/stream-chain.js";
import type { AuditRecord } from "./audit-record.js";

export type ProblemKind =
  | "malformed"
  | "stream-gap"
  | "stream-order"
  | "altered"
  | "chain-broken"
  | "missing"
  | "reordered"
  | "duplicate"
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

export interface VerifyReport {
  ok: boolean;
  /** messages read */
  records: number;
  sessions: number;
  checkpoints: number;
  /** the stream chain was checked from this stream sequence (1, or the first checkpoint boundary of a partial copy) */
  streamChainFrom: number | undefined;
  /** last stream sequence covered by a checkpoint that matched */
  sealedThrough: number;
  /** records after the last checkpoint (not yet sealed) */
  unsealed: number;
  /** "pinned": every checkpoint signature checked against the given key; "unchecked": no key given */
  signatures: "pinned" | "unchecked";
  firstProblem?: VerifyProblem;
  /** every problem found, in stream order (capped) */
  problems: VerifyProblem[];
}

export interface VerifyOptions {
  /** the pinned sealer public key; without it signatures are not checked (and the report says so) */
  publicKey?: KeyObject;
  /** cap on problems kept (default 100) */
  maxProblems?: number;
}

interface SessionState {
  seq: number;
  hash: string;
  /** set once the session's chain broke: later events only classify that break */
  broken?: { problem: VerifyProblem; expected: number };
}

function describeAt(r: AuditRecord, ev?: CloudEvent): string {
  return `stream seq ${r.seq}${ev ? `, session ${ev.subject}, event ${ev.id}` : ""}`;
}

/**
 * Recomputes everything the audit trail promises, one record at a time in stream order:
 *  - stream sequences are contiguous;
 *  - every session's hash chain (seq + prevhash + hash, verifyChain from shared/events), telling a
 *    missing sequence from a reordered one by whether the expected event shows up later;
 *  - the stream-wide chain against every checkpoint, and the checkpoints' own chain and signatures.
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
  private count = 0;
  private readonly max: number;
  private readonly all: Checkpoint[] = [];
  private prevCp: Checkpoint | undefined;
  private pinnedId: string | undefined;
  private dropped = 0;

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
    } else if (cp.firstSeq === 1 && cp.prevCheckpointHash !== CHECKPOINT_GENESIS) {
      flag("checkpoint-link", "the first checkpoint of the stream does not start from the genesis hash");
    }
    if (bad) this.cpBad.add(cp);
    if (!this.cpAt.has(cp.lastSeq)) this.cpAt.set(cp.lastSeq, cp);
    this.all.push(cp);
    this.prevCp = cp;
  }

  /**
   * A checkpoint that arrives interleaved with the records (right after the record that ends its
   * range, as AuditService.Read and the JSON-lines copy deliver them).
   */
  addCheckpoint(cp: Checkpoint): void {
    this.registerCheckpoint(cp);
    if (this.lastSeq !== undefined && cp.lastSeq === this.lastSeq) this.sealAt(cp.lastSeq);
  }

  private report(p: VerifyProblem): void {
    if (this.problems.length < this.max) this.problems.push(p);
    else this.dropped++;
  }

  add(r: AuditRecord): void {
    this.count++;
    const ev = r.event;
    // 1. stream sequences
    if (this.lastSeq === undefined) {
      this.firstSeq = r.seq;
      if (r.seq === 1) {
        this.head = STREAM_GENESIS;
        this.chainFrom = 1;
      } else {
        const anchor = this.cpAt.get(r.seq - 1);
        if (anchor && !this.cpBad.has(anchor)) {
          this.head = anchor.chainHash;
          this.chainFrom = r.seq;
        }
      }
    } else if (r.seq !== this.lastSeq + 1) {
      if (r.seq <= this.lastSeq) {
        this.report({ kind: "stream-order", streamSeq: r.seq, sessionId: ev?.subject, eventId: ev?.id,
          reason: `${describeAt(r, ev)}: stream sequence goes back from ${this.lastSeq} (records reordered or duplicated)` });
      } else {
        const missing = r.seq - 1 === this.lastSeq + 1 ? `${this.lastSeq + 1}` : `${this.lastSeq + 1}..${r.seq - 1}`;
        this.report({ kind: "stream-gap", streamSeq: this.lastSeq + 1, sessionId: ev?.subject, eventId: ev?.id,
          reason: `stream seq ${missing} missing (the record before ${describeAt(r, ev)})` });
      }
      this.head = undefined; // unanchored until the next checkpoint boundary
    }
    this.lastSeq = Math.max(this.lastSeq ?? 0, r.seq);

    // 2. the message itself
    if (!ev) {
      this.report({ kind: "malformed", streamSeq: r.seq, reason: `stream seq ${r.seq}: not a CloudEvents JSON event` });
    }

    // 3. the stream chain and the checkpoint that ends here
    if (this.head !== undefined) this.head = streamChainStep(this.head, r.seq, eventDigest(ev, r.raw === undefined ? undefined : Buffer.from(r.raw, "utf8")));
    this.sealAt(r.seq);

    // 4. the session chain
    if (ev) this.checkSession(r, ev);
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
      }
    }
    if (!this.cpBad.has(cp)) {
      if (this.chainFrom === undefined) this.chainFrom = seq + 1;
      this.head = cp.chainHash;
    }
  }

  private checkSession(r: AuditRecord, ev: CloudEvent): void {
    const id = ev.subject;
    const seq = ev.sluicesessionseq;
    const st = this.sessions.get(id);
    const at = { streamSeq: r.seq, sessionId: id, eventId: ev.id, sessionSeq: seq };
    if (st?.broken) {
      if (seq === st.broken.expected && st.broken.problem.kind === "missing") {
        const p = st.broken.problem;
        p.kind = "reordered";
        p.reason = `stream seq ${p.streamSeq}, session ${id}, event ${p.eventId}: session sequence ${p.sessionSeq} arrives before ${seq}, which comes later at stream seq ${r.seq} (reordered)`;
      }
      return;
    }
    if (typeof ev.sluicehash !== "string" || typeof seq !== "number") {
      const p: VerifyProblem = { ...at, kind: "altered", reason: `${describeAt(r, ev)}: event is not hash-chained (no sluicesessionseq/sluicehash)` };
      this.report(p);
      this.sessions.set(id, { seq: 0, hash: GENESIS_HASH, broken: { problem: p, expected: -1 } });
      return;
    }
    let state = st;
    if (!state) {
      // A partial copy (not starting at stream seq 1) may begin in the middle of a session: anchor there.
      if (seq > 1 && this.firstSeq !== 1) {
        if (hashEvent(ev) !== ev.sluicehash) {
          this.report({ ...at, kind: "altered", reason: `${describeAt(r, ev)}: hash does not match the event content (altered)` });
        }
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
      p = { ...at, kind: "missing", reason: `${describeAt(r, ev)}: session sequence ${missing} missing (the session jumps from ${state.seq} to ${seq})` };
    } else if (seq <= state.seq) {
      p = { ...at, kind: "duplicate", reason: `${describeAt(r, ev)}: session sequence ${seq} appears again after ${state.seq} (duplicated or replayed)` };
    } else if (/altered/.test(problem.reason)) {
      p = { ...at, kind: "altered", reason: `${describeAt(r, ev)}: hash does not match the event content (altered)` };
    } else {
      p = { ...at, kind: "chain-broken", reason: `${describeAt(r, ev)}: prevhash does not match session event ${state.seq} (an earlier event was replaced)` };
    }
    this.report(p);
    state.broken = { problem: p, expected: state.seq + 1 };
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
    // stable sort: by position, detection order within a position
    const problems = this.problems.map((p, i) => ({ p, i })).sort((a, b) => a.p.streamSeq - b.p.streamSeq || a.i - b.i).map((x) => x.p);
    return {
      ok: problems.length === 0,
      records: this.count,
      sessions: this.sessions.size,
      checkpoints: this.all.length,
      streamChainFrom: this.chainFrom,
      sealedThrough: this.sealed,
      unsealed: Math.max(0, last - Math.max(this.sealed, (this.firstSeq ?? 1) - 1)),
      signatures: this.o.publicKey ? "pinned" : "unchecked",
      firstProblem: problems[0],
      problems,
    };
  }
}

export function verifyAudit(records: Iterable<AuditRecord>, checkpoints: readonly Checkpoint[], o: VerifyOptions = {}): VerifyReport {
  const v = new AuditVerifier(checkpoints, o);
  for (const r of records) v.add(r);
  return v.finish();
}

export async function verifyAuditStream(records: AsyncIterable<AuditRecord>, checkpoints: readonly Checkpoint[], o: VerifyOptions = {}): Promise<VerifyReport> {
  const v = new AuditVerifier(checkpoints, o);
  for await (const r of records) v.add(r);
  return v.finish();
}

/** One line for humans: what is wrong first, or what was proven. */
export function summarizeReport(r: VerifyReport): string {
  if (r.firstProblem) return `FAILED: ${r.firstProblem.reason}`;
  const sig = r.signatures === "pinned" ? "signatures verified against the pinned key" : "signatures NOT checked (no --public-key)";
  return `ok: ${r.records} events, ${r.sessions} sessions, ${r.checkpoints} checkpoints; sealed through seq ${r.sealedThrough}, ${r.unsealed} not yet sealed; ${sig}`;
}
