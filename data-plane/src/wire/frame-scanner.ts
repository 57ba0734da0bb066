/**
 * Framing of the typed protocol v3 messages (1 code byte + int32 length that counts itself + body).
 * Pure: bytes in, frames or raw byte ranges out. Frames keep their raw bytes; nothing is decoded here.
 */

/** A frame keeps its raw bytes (code + length + body); it is decoded only when someone asks. */
export interface Frame {
  readonly code: number;
  readonly raw: Buffer;
}

/** A protocol violation by the peer: the connection must be closed with 08P01. */
export class WireError extends Error {
  override readonly name = "WireError";
  constructor(message: string, readonly sqlstate = "08P01") {
    super(message);
  }
}

function checkLength(code: number, len: number, maxLen: number): void {
  if (len < 4) throw new WireError(`invalid message length ${len} for message type 0x${code.toString(16)}`);
  if (len > maxLen) throw new WireError(`message length ${len} exceeds the maximum of ${maxLen} bytes`);
}

/** Splits a byte stream into frames. Returns the frames and the unconsumed tail. */
export function splitFrames(buf: Buffer, maxLen: number): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let i = 0;
  while (buf.length - i >= 5) {
    const code = buf[i]!;
    const len = buf.readInt32BE(i + 1);
    checkLength(code, len, maxLen);
    const end = i + 1 + len;
    if (end > buf.length) break;
    frames.push({ code, raw: buf.subarray(i, end) });
    i = end;
  }
  return { frames, rest: buf.subarray(i) };
}

/** What to do with a frame once its header is known. */
export const enum Mode {
  /** forward the raw bytes as they arrive, possibly before the frame is complete */
  Pass = 0,
  /** collect the whole frame and hand it to `frame()` */
  Whole = 1,
  /** swallow it */
  Drop = 2,
}

export interface ScanSink {
  /** the header of the next frame; choose its mode (called once per frame, before any byte of it is emitted) */
  head(code: number, len: number): Mode;
  /** a complete frame in Mode.Whole; return false to pause scanning right after it */
  frame(code: number, frame: Buffer): boolean;
  /** consecutive raw bytes of Pass frames: one call per run, not per frame */
  pass(bytes: Buffer): void;
}

/**
 * Streaming scanner over a chunked byte stream. Contiguous Pass frames in one chunk are emitted as one
 * slice, so a chunk of forwarded frames costs one `pass` call and no allocation; bytes are copied only
 * when a header or a Whole frame straddles chunks. A frame in Pass mode streams through even when it
 * is larger than a chunk (large DataRow, CopyData).
 */
export class FrameScanner {
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  /** bytes of the current frame still to come (after its header) */
  private remaining = 0;
  private mode: Mode = Mode.Pass;
  private code = 0;
  private parts: Buffer[] = [];
  private partsLen = 0;
  private chunk: Buffer | null = null;
  private off = 0;
  private queued: Buffer[] = [];
  private isPaused = false;

  constructor(readonly maxLen: number) {}

  get paused(): boolean {
    return this.isPaused;
  }

  /** no frame begun, none held and nothing queued: the stream is at a message boundary */
  get atBoundary(): boolean {
    return this.hdrLen === 0 && this.remaining === 0 && !this.isPaused && this.queued.length === 0;
  }

  /** Scans one chunk. Returns false when a `frame()` call paused it (call `resume` later). Throws WireError. */
  feed(chunk: Buffer, sink: ScanSink): boolean {
    if (this.isPaused) {
      this.queued.push(chunk);
      return false;
    }
    this.chunk = chunk;
    this.off = 0;
    return this.drain(sink);
  }

  /** Continues after a pause: the rest of the paused chunk, then any chunks queued meanwhile. */
  resume(sink: ScanSink): boolean {
    if (!this.isPaused) return true;
    this.isPaused = false;
    return this.drain(sink);
  }

  private drain(sink: ScanSink): boolean {
    for (;;) {
      if (this.chunk !== null && !this.scan(sink)) return false;
      const next = this.queued.shift();
      if (next === undefined) return true;
      this.chunk = next;
      this.off = 0;
    }
  }

  /** Returns false when paused; otherwise consumes the whole current chunk. */
  private scan(sink: ScanSink): boolean {
    const c = this.chunk!;
    const n = c.length;
    let i = this.off;
    let runStart = -1;

    // 1. a header that straddled the previous chunk
    if (this.hdrLen > 0) {
      const take = Math.min(5 - this.hdrLen, n - i);
      c.copy(this.hdr, this.hdrLen, i, i + take);
      this.hdrLen += take;
      i += take;
      if (this.hdrLen < 5) {
        this.chunk = null;
        return true;
      }
      this.hdrLen = 0;
      const code = this.hdr[0]!;
      const len = this.hdr.readInt32BE(1);
      checkLength(code, len, this.maxLen);
      this.code = code;
      this.mode = sink.head(code, len);
      this.remaining = len - 4;
      if (this.mode === Mode.Pass) sink.pass(Buffer.from(this.hdr));
      else if (this.mode === Mode.Whole) {
        this.parts = [Buffer.from(this.hdr)];
        this.partsLen = 5;
      }
      if (this.remaining === 0 && this.mode === Mode.Whole) {
        if (!this.finishWhole(sink, i)) return false;
      }
    }

    // 2. the body of a frame that straddled
    if (this.remaining > 0) {
      const take = Math.min(this.remaining, n - i);
      if (this.mode === Mode.Pass) runStart = i;
      else if (this.mode === Mode.Whole) {
        this.parts.push(c.subarray(i, i + take));
        this.partsLen += take;
      }
      i += take;
      this.remaining -= take;
      if (this.remaining === 0 && this.mode === Mode.Whole) {
        if (!this.finishWhole(sink, i)) return false;
      }
    }

    // 3. frames starting in this chunk (the hot loop)
    while (i < n) {
      if (n - i < 5) {
        if (runStart >= 0) {
          sink.pass(c.subarray(runStart, i));
          runStart = -1;
        }
        c.copy(this.hdr, 0, i, n);
        this.hdrLen = n - i;
        i = n;
        break;
      }
      const code = c[i]!;
      const len = c.readInt32BE(i + 1);
      checkLength(code, len, this.maxLen);
      const mode = sink.head(code, len);
      const end = i + 1 + len;
      if (mode === Mode.Pass) {
        if (runStart < 0) runStart = i;
        if (end <= n) {
          i = end;
          continue;
        }
        this.mode = Mode.Pass;
        this.code = code;
        this.remaining = end - n;
        i = n;
        break;
      }
      if (runStart >= 0) {
        sink.pass(c.subarray(runStart, i));
        runStart = -1;
      }
      if (end <= n) {
        const start = i;
        i = end;
        if (mode === Mode.Whole && !sink.frame(code, c.subarray(start, end))) {
          this.off = i;
          this.isPaused = true;
          return false;
        }
        continue;
      }
      this.mode = mode;
      this.code = code;
      this.remaining = end - n;
      if (mode === Mode.Whole) {
        this.parts = [c.subarray(i, n)];
        this.partsLen = n - i;
      }
      i = n;
      break;
    }
    if (runStart >= 0) sink.pass(c.subarray(runStart, i));
    this.chunk = null;
    return true;
  }

  private finishWhole(sink: ScanSink, i: number): boolean {
    const frame = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    if (!sink.frame(this.code, frame)) {
      this.off = i;
      this.isPaused = true;
      return false;
    }
    return true;
  }
}
