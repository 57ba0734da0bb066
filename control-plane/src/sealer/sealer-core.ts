import { SluiceError } from "@sluice/shared/errors";
import { CHECKPOINT_GENESIS, checkpointHash, type Checkpoint, type UnsignedCheckpoint } from "./checkpoint.js";
import { STREAM_GENESIS, streamChainStep } from "./stream-chain.js";

/** Where sealing resumes: after the last checkpoint, or at the start of the stream. */
export interface SealPosition {
  /** last sealed stream sequence (0 = nothing sealed) */
  lastSeq: number;
  chainHash: string;
  /** hash of the last checkpoint (CHECKPOINT_GENESIS before the first) */
  checkpointHash: string;
}

export const START_OF_STREAM: SealPosition = { lastSeq: 0, chainHash: STREAM_GENESIS, checkpointHash: CHECKPOINT_GENESIS };

export function positionAfter(cp: Checkpoint): SealPosition {
  return { lastSeq: cp.lastSeq, chainHash: cp.chainHash, checkpointHash: checkpointHash(cp) };
}

export interface SealerCoreOptions {
  stream: string;
  keyId: string;
  sign: (cp: UnsignedCheckpoint) => Checkpoint;
  everyEvents: number;
  everyMs: number;
}

/**
 * The sealer's state machine, pure apart from hashing and signing: stream messages in (sequence and
 * digest), signed checkpoints out. Time comes in as an argument.
 */
export class SealerCore {
  private pos: SealPosition;
  private head: string;
  private headSeq: number;
  private lastCutMs: number;

  constructor(private readonly o: SealerCoreOptions, from: SealPosition, nowMs: number) {
    this.pos = from;
    this.head = from.chainHash;
    this.headSeq = from.lastSeq;
    this.lastCutMs = nowMs;
  }

  /** The next stream sequence the core expects. */
  get nextSeq(): number {
    return this.headSeq + 1;
  }

  get pending(): number {
    return this.headSeq - this.pos.lastSeq;
  }

  get position(): SealPosition {
    return this.pos;
  }

  /** Extends the chain; stream sequences must arrive contiguous (the audit stream denies deletes). */
  add(seq: number, digest: string): void {
    if (seq !== this.headSeq + 1) {
      throw new SluiceError("internal", `sealer: stream sequence ${seq} does not follow ${this.headSeq}`);
    }
    this.head = streamChainStep(this.head, seq, digest);
    this.headSeq = seq;
  }

  /** A checkpoint is due after N events, or after T with at least one unsealed event. */
  due(nowMs: number): boolean {
    const n = this.pending;
    return n >= this.o.everyEvents || (n > 0 && nowMs - this.lastCutMs >= this.o.everyMs);
  }

  /** Cuts and signs a checkpoint over everything added since the last one. */
  cut(now: Date): Checkpoint | undefined {
    if (this.pending === 0) {
      this.lastCutMs = now.getTime();
      return undefined;
    }
    const cp = this.o.sign({
      stream: this.o.stream,
      firstSeq: this.pos.lastSeq + 1,
      lastSeq: this.headSeq,
      count: this.headSeq - this.pos.lastSeq,
      chainHash: this.head,
      prevCheckpointHash: this.pos.checkpointHash,
      at: now.toISOString(),
      keyId: this.o.keyId,
    });
    this.pos = positionAfter(cp);
    this.lastCutMs = now.getTime();
    return cp;
  }
}
