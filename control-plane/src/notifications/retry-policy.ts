/**
 * When a webhook delivery is tried again (pure). A 2xx is delivered; 408, 425, 429 and 5xx, a
 * timeout or a network error are worth another attempt; any other status is the receiver saying no
 * (a wrong URL, a refused signature) and retrying would not change its answer.
 */
export type AttemptOutcome = "delivered" | "retry" | "give-up";

export function outcomeOf(status: number | "network-error"): AttemptOutcome {
  if (status === "network-error") return "retry";
  if (status >= 200 && status < 300) return "delivered";
  if (status === 408 || status === 425 || status === 429 || status >= 500) return "retry";
  return "give-up";
}

export interface RetrySchedule {
  /** attempts in all, the first included */
  maxAttempts: number;
  /** the wait before the second attempt; each further wait doubles */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** 8 attempts over about four minutes: 1, 2, 4, 8, 16, 32, 60 s between them (± jitter). */
export const DEFAULT_SCHEDULE: RetrySchedule = { maxAttempts: 8, baseDelayMs: 1000, maxDelayMs: 60_000 };

/**
 * The wait after failed attempt `attempt` (1-based): exponential, capped, with ±20 % jitter from
 * `random` (0..1) so replicas and receivers recovering together are not hit in step. Undefined when
 * no attempt is left.
 */
export function delayAfter(attempt: number, s: RetrySchedule, random: number): number | undefined {
  if (attempt >= s.maxAttempts) return undefined;
  const d = Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(d * (0.8 + 0.4 * Math.min(1, Math.max(0, random))));
}
