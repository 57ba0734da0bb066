/**
 * One notice to one webhook: signed POST, retried with back-off until delivered, refused, out of
 * attempts, or stopped. The clock, the wait, the randomness and the HTTP client come in, so every
 * path is testable without waiting. Nothing here blocks a session or an approval: the notifier runs
 * it after the event is stored, on its own.
 *
 * Logged: the webhook's name, the attempt, the HTTP status. Never the URL (it may be a secret, as a
 * Slack webhook URL is), the signing secret, or the response body.
 */
import { SluiceError } from "@sluice/shared/errors";
import type { Logger } from "@sluice/shared/logging";
import type { WebhookSpec } from "@sluice/shared/policy";
import type { ApprovalNotice } from "./approval-notice.js";
import { delayAfter, outcomeOf, type RetrySchedule } from "./retry-policy.js";
import { SIGNATURE_HEADERS, signWebhook } from "./webhook-signature.js";
import { bodyFor } from "./webhook-body.js";

export type DeliveryResult = "delivered" | "failed" | "stopped";

export interface DeliveryDeps {
  fetch: typeof fetch;
  /** wall clock, for the signature timestamp */
  now: () => Date;
  /** resolves after `ms`, or rejects when `signal` aborts */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  random: () => number;
  /** `env:` / `file:` references of the bundle, resolved in this process */
  resolveSecret: (ref: string) => Promise<string>;
  schedule: RetrySchedule;
  /** one attempt's deadline (default 10 s) */
  attemptTimeoutMs: number;
  logger: Logger;
  /** after each attempt (metrics, tests) */
  onAttempt?: (webhook: string, outcome: "delivered" | "retry" | "give-up", status: number | "network-error") => void;
}

/** The id a receiver de-duplicates on: the same for every attempt of this notice to this webhook. */
export function deliveryId(n: ApprovalNotice, w: WebhookSpec): string {
  return `${n.eventId}:${w.name}`;
}

const isRef = (s: string) => s.startsWith("env:") || s.startsWith("file:");

export async function deliverWebhook(w: WebhookSpec, n: ApprovalNotice, deps: DeliveryDeps, signal: AbortSignal): Promise<DeliveryResult> {
  const log = deps.logger.child({ webhook: w.name, approvalId: n.approvalId, notice: n.kind });
  const id = deliveryId(n, w);
  const body = bodyFor(w.format, n);
  for (let attempt = 1; ; attempt++) {
    if (signal.aborted) return "stopped";
    let url: string;
    let secret: string;
    try {
      url = isRef(w.url) ? await deps.resolveSecret(w.url) : w.url;
      secret = await deps.resolveSecret(w.secret);
    } catch (e) {
      // a reference this control plane cannot resolve will not resolve on the next attempt either
      log.error({ err: SluiceError.from(e).message }, "webhook not sent: its URL or secret reference cannot be resolved here");
      return "failed";
    }
    const ts = Math.floor(deps.now().getTime() / 1000);
    let status: number | "network-error";
    try {
      const res = await deps.fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "sluice-webhook/1",
          [SIGNATURE_HEADERS.id]: id,
          [SIGNATURE_HEADERS.timestamp]: String(ts),
          [SIGNATURE_HEADERS.signature]: signWebhook(secret, id, ts, body),
        },
        body,
        // a redirect would send a signed approval somewhere nobody configured
        redirect: "manual",
        signal: AbortSignal.any([signal, AbortSignal.timeout(deps.attemptTimeoutMs)]),
      });
      status = res.status;
      await res.body?.cancel().catch(() => undefined);
    } catch {
      if (signal.aborted) return "stopped";
      status = "network-error";
    }
    const outcome = outcomeOf(status);
    deps.onAttempt?.(w.name, outcome, status);
    if (outcome === "delivered") {
      log.info({ attempt, status }, "webhook delivered");
      return "delivered";
    }
    const wait = outcome === "retry" ? delayAfter(attempt, deps.schedule, deps.random()) : undefined;
    if (wait === undefined) {
      log.warn({ attempt, status }, outcome === "give-up" ? "webhook refused by the receiver; not retried" : "webhook not delivered; out of attempts");
      return "failed";
    }
    log.info({ attempt, status, retryInMs: wait }, "webhook attempt failed; retrying");
    try {
      await deps.sleep(wait, signal);
    } catch {
      return "stopped";
    }
  }
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
