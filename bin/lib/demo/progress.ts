/**
 * The demo's "still waiting" indicator. On a terminal it is a spinner with the elapsed time,
 * redrawn in place on one line and erased when the wait ends; anywhere else (a pipe, a CI log, a
 * file) it writes one plain line when the wait starts and nothing more, so a log never fills with
 * carriage returns or escape codes. The clock and the timer come in, so its output can be tested
 * without waiting.
 */

export interface ProgressSink {
  write(text: string): void;
  /** true for a terminal: the indicator redraws in place */
  isTTY?: boolean;
}

export interface ProgressClock {
  now(): number;
  every(ms: number, tick: () => void): () => void;
}

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const REDRAW_MS = 100;

export const realClock: ProgressClock = {
  now: () => Date.now(),
  every(ms, tick) {
    const t = setInterval(tick, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

export class Progress {
  constructor(
    private readonly sink: ProgressSink,
    private readonly clock: ProgressClock = realClock,
    private readonly indent = "",
  ) {}

  /**
   * Shows `label` while `work` runs; resolves with its value and the milliseconds it took. The
   * indicator is gone before the promise settles, so the caller's next line starts clean.
   */
  async while<T>(label: string, work: Promise<T> | (() => Promise<T>)): Promise<{ value: T; ms: number }> {
    const t0 = this.clock.now();
    let stopTicking = () => {};
    if (this.sink.isTTY) {
      let frame = 0;
      const draw = () => {
        const s = ((this.clock.now() - t0) / 1000).toFixed(1);
        this.sink.write(`\r\x1b[2K${this.indent}${FRAMES[frame++ % FRAMES.length]} ${label} ${s}s`);
      };
      draw();
      stopTicking = this.clock.every(REDRAW_MS, draw);
    } else {
      this.sink.write(`${this.indent}… ${label}\n`);
    }
    try {
      const value = await (typeof work === "function" ? work() : work);
      return { value, ms: this.clock.now() - t0 };
    } finally {
      stopTicking();
      if (this.sink.isTTY) this.sink.write("\r\x1b[2K");
    }
  }
}
