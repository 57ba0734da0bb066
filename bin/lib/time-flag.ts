/**
 * --since/--until: an ISO time, or a duration back from now (`30m`, `2h`, `7d`). The duration parser
 * comes with the configuration module (and its YAML parser), so it is loaded only for a duration.
 */
import { UsageError } from "./cli-kit.js";

const DURATION = /^\d+(\.\d+)?(ms|s|m|h|d)$/;

/** One flag's value as an ISO time (undefined when absent). */
export function parseTimeFlag(v: string | undefined, now: Date, parseDuration: (s: string) => number): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (DURATION.test(v.trim())) return new Date(now.getTime() - parseDuration(v)).toISOString();
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new UsageError(`not a time (ISO 8601) or a duration like 2h: ${JSON.stringify(v)}`);
  return new Date(t).toISOString();
}

/** --since and --until as ISO times, "" when absent. */
export async function parseTimeFlags(values: { since?: unknown; until?: unknown }, now: Date): Promise<{ since: string; until: string }> {
  const [since, until] = [values.since, values.until].map((v) => (typeof v === "string" ? v : undefined));
  const needsDuration = [since, until].some((v) => v !== undefined && DURATION.test(v.trim()));
  const parseDuration = needsDuration ? (await import("@sluice/shared/config")).parseDuration : () => NaN;
  return { since: parseTimeFlag(since, now, parseDuration) ?? "", until: parseTimeFlag(until, now, parseDuration) ?? "" };
}
