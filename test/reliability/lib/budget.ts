/**
 * How big a scenario runs. `npm test` runs the short budget (a few clients, seconds of outage, so
 * the whole room stays within a minute on a shared 2-core machine); `npm run reliability` sets
 * SLUICE_RELIABILITY=full: the durations and loads the issue names (a minute of outage, 1,000
 * sessions, a 1 GB result).
 */
export const FULL = process.env.SLUICE_RELIABILITY === "full";

export const BUDGET = { name: FULL ? "full" : "short" } as const;

/** the short value in npm test, the full one in npm run reliability */
export function budget<T>(short: T, full: T): T {
  return FULL ? full : short;
}
