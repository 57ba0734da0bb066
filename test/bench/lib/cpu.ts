/**
 * CPU time of processes from /proc, to tell what each transaction costs the proxy and the NATS server
 * (issue 7: find where the time goes). A CPU profile of the node cannot: it samples wall time, and on
 * 2 busy cores a write to loopback often ends with the node preempted by the process it woke.
 */
import { readFileSync, readdirSync } from "node:fs";

/** Linux reports utime and stime in clock ticks; USER_HZ is 100 on every Linux build we run on. */
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process has used so far, or NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may hold spaces: the fields after it start past the last ')'
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Pids of every running process whose command name is `name` (e.g. nats-server). */
export function pidsNamed(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, "utf8").trim() === name) out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Total CPU seconds of a set of processes. */
export function totalCpuSeconds(pids: number[]): number {
  return pids.reduce((s, p) => s + (cpuSeconds(p) || 0), 0);
}

/** Parent pid of a process, or undefined if it is gone. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/**
 * Pids of the processes named `name` that descend from `root` (e.g. the nats-server a guard shell or
 * a `sluice dev` stack started), so a figure counts that server alone and not every nats-server on
 * a machine shared with other test runs.
 */
export function descendantsNamed(root: number, name: string): number[] {
  return pidsNamed(name).filter((pid) => {
    for (let p: number | undefined = pid, hops = 0; p && p > 1 && hops < 64; p = parentPid(p), hops++) if (p === root) return true;
    return false;
  });
}
