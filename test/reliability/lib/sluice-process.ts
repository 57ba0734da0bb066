/**
 * One plane as a real process: `node bin/sluice.js <command> --config FILE`, the way an operator
 * runs it, so a fault can be a real signal (SIGKILL, SIGSTOP) and its memory is its own. The
 * process can be started again on the same config (same ports, same identity); its output is
 * kept (the last MiB) so a test can check what it said and show it when something fails.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../lib/run-sluice.js";

export interface SluiceProcessOptions {
  /** `control-plane` or `data-plane` (and its own flags) */
  args: string[];
  /** the environment beyond PATH and HOME (no SLUICE_* of the test runner leaks in) */
  env?: Record<string, string>;
  cwd: string;
  /** resolves once the process serves; rejects when it cannot (it is polled until `readyMs`) */
  ready: (p: SluiceProcess) => Promise<boolean>;
  readyMs?: number;
  label: string;
}

const OUTPUT_CAP = 1 << 20;

export class SluiceProcess {
  private child: ChildProcess | undefined;
  private exitedP: Promise<void> = Promise.resolve();
  private text = "";
  /** starts seen, the current one included */
  starts = 0;

  constructor(readonly o: SluiceProcessOptions) {}

  get pid(): number | undefined {
    return this.running ? this.child!.pid : undefined;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** how the last run ended: an exit code, a signal name, or undefined while running */
  get ended(): string | number | undefined {
    if (!this.child || this.running) return undefined;
    return this.child.signalCode ?? this.child.exitCode ?? undefined;
  }

  private runStart = 0;

  /** what the process wrote on stdout and stderr (all runs; the last MiB) */
  output(): string {
    return this.text;
  }

  /** what the current (or last) run wrote */
  runOutput(): string {
    return this.text.slice(Math.max(0, this.runStart));
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.starts++;
    const child = spawn(process.execPath, [join(repoRoot, "bin/sluice.js"), ...this.o.args], {
      cwd: this.o.cwd,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...this.o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const keep = (d: Buffer) => {
      this.text += d.toString();
      if (this.text.length > OUTPUT_CAP) {
        const cut = this.text.length - OUTPUT_CAP / 2;
        this.text = this.text.slice(cut);
        this.runStart -= cut;
      }
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    this.exitedP = new Promise<void>((r) => child.once("exit", () => r()));
    this.text += `\n--- ${this.o.label} start #${this.starts} pid ${child.pid} ---\n`;
    this.runStart = this.text.length;
    const until = Date.now() + (this.o.readyMs ?? 90_000);
    for (;;) {
      if (!this.running) throw new Error(`${this.o.label} exited (${this.ended}) before it was ready:\n${this.tail()}`);
      if (await this.o.ready(this).catch(() => false)) return;
      if (Date.now() > until) {
        await this.kill("SIGKILL");
        throw new Error(`${this.o.label} not ready within ${this.o.readyMs ?? 90_000} ms:\n${this.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** sends `signal`; for SIGKILL/SIGTERM waits until the process is gone */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (!this.running) return;
    this.child!.kill(signal);
    if (signal === "SIGKILL" || signal === "SIGTERM" || signal === "SIGINT") await this.exitedP;
  }

  /** a clean stop (SIGTERM), SIGKILL after `graceMs` */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    if (this.child!.signalCode === null) this.child!.kill("SIGCONT");
    this.child!.kill("SIGTERM");
    const t = setTimeout(() => this.child?.kill("SIGKILL"), graceMs);
    await this.exitedP;
    clearTimeout(t);
  }

  /** resident set size now and its peak (VmHWM) over this run, in MiB */
  memory(): { rssMb: number; peakMb: number; anonMb: number; fileMb: number; threads: number } {
    const pid = this.pid;
    if (!pid) return { rssMb: NaN, peakMb: NaN, anonMb: NaN, fileMb: NaN, threads: NaN };
    try {
      const s = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
      return {
        rssMb: kb("VmRSS") / 1024,
        peakMb: kb("VmHWM") / 1024,
        // anonymous (heaps: V8's, the workers', OpenSSL's and the allocator's) vs file-backed (code)
        anonMb: kb("RssAnon") / 1024,
        fileMb: (kb("RssFile") + kb("RssShmem")) / 1024,
        threads: Number(/Threads:\s+(\d+)/.exec(s)?.[1] ?? NaN),
      };
    } catch {
      return { rssMb: NaN, peakMb: NaN, anonMb: NaN, fileMb: NaN, threads: NaN };
    }
  }

  tail(lines = 40): string {
    return this.text.trim().split("\n").slice(-lines).join("\n");
  }
}
