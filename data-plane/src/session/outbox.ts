/**
 * The bytes one direction of the relay has to send, collected until a flush writes them in one call.
 * Adjacent slices of the same input chunk extend one open range (plain numbers, no Buffer view per
 * frame), so a chunk of forwarded frames leaves as that chunk itself, or one slice of it. Pure.
 */
export class Outbox {
  private pieces: Buffer[] = [];
  private size = 0;
  /** the open range: a slice of `runBuf` from runStart to runEnd (absolute offsets in its ArrayBuffer) */
  private runBuf: ArrayBufferLike | null = null;
  private runStart = 0;
  private runEnd = 0;
  private runSrc: Buffer | null = null;
  constructor(private readonly write: (b: Buffer) => void) {}

  /** bytes waiting for the next flush */
  get pending(): number {
    return this.size;
  }

  push(b: Buffer): void {
    const n = b.length;
    if (n === 0) return;
    if (this.runBuf === b.buffer && this.runEnd === b.byteOffset) {
      this.runEnd += n;
      this.size += n;
      return;
    }
    this.closeRun();
    this.runBuf = b.buffer;
    this.runStart = b.byteOffset;
    this.runEnd = b.byteOffset + n;
    this.runSrc = b;
    this.size += n;
  }

  private closeRun(): void {
    if (this.runBuf === null) return;
    const src = this.runSrc!;
    // the common case: the run is exactly the buffer that opened it
    this.pieces.push(
      this.runStart === src.byteOffset && this.runEnd === src.byteOffset + src.length
        ? src
        : Buffer.from(this.runBuf, this.runStart, this.runEnd - this.runStart),
    );
    this.runBuf = null;
    this.runSrc = null;
  }

  /** writes everything pushed since the last flush as one Buffer (nothing when empty) */
  flush(): void {
    this.closeRun();
    const n = this.pieces.length;
    if (n === 0) return;
    const out = n === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.size);
    this.pieces = [];
    this.size = 0;
    this.write(out);
  }
}
