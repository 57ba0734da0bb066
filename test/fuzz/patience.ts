/**
 * How long a fuzz case waits for each thing it waits for, and when a failing case is run again
 * with much longer waits. Pure: the load average and core count are the caller's to read.
 *
 * Every wait of a case is a guess at "the answer is not coming". On a loaded machine (2 cores at
 * load ~20 with other helpers) an answer can take longer than any guess fit for an idle one, and
 * a wait that runs out then looks like a hang (oracle 4 `no-answer`) or a lost event (oracle 2).
 * A time-out caused by load is not a finding, but a real hang must still be one. So: waits grow
 * with the load per core, and a case that failed while any wait ran out is run again alone with
 * waits many times longer; only what that re-run reports counts. A real hang hangs through every
 * wait, so it is still caught — the re-run costs time only for cases that failed.
 */

export interface Patience {
  /** silence on a stream, after the case's last frames, before it counts as stalled */
  idleMs: number;
  /** how long a `W` waits for the answers so far before the client writes on */
  waitOpMs: number;
  /** a connection's start-up up to ReadyForQuery */
  connectMs: number;
  /** the statement log's marker reaching the file */
  logMs: number;
  /** the session's session.ended reaching the audit collector */
  auditMs: number;
}

/** the waits of an idle machine (the ones the suite had before waits grew with the load) */
export const BASE_PATIENCE: Patience = { idleMs: 8000, waitOpMs: 2000, connectMs: 10_000, logMs: 10_000, auditMs: 10_000 };

/** above this, load does not stretch the first run further: the re-run is there for the rest */
export const MAX_LOAD_FACTOR = 4;

/** how much longer than the first run's the waits of a re-run for time are */
export const RERUN_FACTOR = 8;

/** the first run's stretch: the runnable tasks per core (1-minute load average), at least 1 */
export function loadFactor(load1: number, cores: number): number {
  if (!Number.isFinite(load1) || !Number.isFinite(cores) || cores <= 0) return 1;
  return Math.min(MAX_LOAD_FACTOR, Math.max(1, load1 / cores));
}

export function scaled(p: Patience, factor: number): Patience {
  const f = Number.isFinite(factor) && factor > 1 ? factor : 1;
  return {
    idleMs: Math.round(p.idleMs * f),
    waitOpMs: Math.round(p.waitOpMs * f),
    connectMs: Math.round(p.connectMs * f),
    logMs: Math.round(p.logMs * f),
    auditMs: Math.round(p.auditMs * f),
  };
}

/**
 * The first run's waits at this load: every wait stretched by loadFactor except a `W`'s. A W runs
 * out by design where the server has nothing to say yet (a COPY FROM STDIN waiting for data after
 * a Flush), so stretching it costs each such case its whole length, twice (proxy and direct run),
 * and a minimisation of such a case that many times over; a W that ran out under load in a case
 * that then failed is re-run with the long waits anyway.
 */
export function firstRunPatience(load1: number, cores: number): Patience {
  return { ...scaled(BASE_PATIENCE, loadFactor(load1, cores)), waitOpMs: BASE_PATIENCE.waitOpMs };
}

/** the waits of a re-run for time: RERUN_FACTOR times the first run's, and never less than that times the base */
export function rerunPatience(first: Patience): Patience {
  const a = scaled(first, RERUN_FACTOR), b = scaled(BASE_PATIENCE, RERUN_FACTOR);
  return {
    idleMs: Math.max(a.idleMs, b.idleMs),
    waitOpMs: Math.max(a.waitOpMs, b.waitOpMs),
    connectMs: Math.max(a.connectMs, b.connectMs),
    logMs: Math.max(a.logMs, b.logMs),
    auditMs: Math.max(a.auditMs, b.auditMs),
  };
}

/** which wait ran out, for the report's count (`what` without numbers) */
export type Wait = "proxy-idle" | "reference-idle" | "proxy-wait-op" | "reference-wait-op" | "proxy-connect" | "reference-connect" | "statement-log" | "audit-session-ended";

/**
 * Whether a case's verdict may be the load's rather than the proxy's: it failed (or its reference
 * run did not complete, which leaves oracle 4 inconclusive) while at least one of its waits ran
 * out. A failure with no wait run out is judged as it is: waiting longer would not change it.
 */
export function needsRerunForTime(ranOut: readonly Wait[], v: { failures: readonly unknown[]; referenceIncomplete: boolean }): boolean {
  return ranOut.length > 0 && (v.failures.length > 0 || v.referenceIncomplete);
}
