import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "@sluice/shared/logging";
import type { WebhookSpec } from "@sluice/shared/policy";
import { approvalNotice } from "./approval-notice.js";
import { DEFAULT_SCHEDULE } from "./retry-policy.js";
import { deliverWebhook, deliveryId, type DeliveryDeps } from "./webhook-delivery.js";
import { verifyWebhookSignature } from "./webhook-signature.js";
import { requested } from "./testing.js";

const notice = approvalNotice(requested(), requested(), { eventId: "ev-1", time: "2026-12-01T10:00:00.000Z" });
const hook: WebhookSpec = { name: "sink", url: "https://hooks.example/x", secret: "env:HOOK_SECRET" };

/** A scripted receiver and a clock that only moves when the delivery sleeps. */
function rig(answers: Array<number | "network-error">) {
  const calls: Array<{ url: string; headers: Record<string, string>; body: string; at: number }> = [];
  const sleeps: number[] = [];
  let now = Date.parse("2026-12-01T10:00:00Z");
  const deps: DeliveryDeps = {
    fetch: (async (url: string, init: RequestInit) => {
      calls.push({ url, headers: init.headers as Record<string, string>, body: String(init.body), at: now });
      const a = answers.shift() ?? 200;
      if (a === "network-error") throw new TypeError("fetch failed");
      return new Response("ignored", { status: a });
    }) as typeof fetch,
    now: () => new Date(now),
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    random: () => 0.5,
    resolveSecret: async (ref) => {
      if (ref === "env:HOOK_SECRET") return "topsecret";
      if (ref === "env:HOOK_URL") return "https://hooks.example/from-env";
      throw new Error(`${ref} not set`);
    },
    schedule: DEFAULT_SCHEDULE,
    attemptTimeoutMs: 1000,
    logger: createLogger({ level: "silent" }),
  };
  return { deps, calls, sleeps };
}

test("retried with back-off after failures, one id for every attempt, a fresh valid signature on each", async () => {
  const r = rig([500, "network-error", 503, 200]);
  assert.equal(await deliverWebhook(hook, notice, r.deps, new AbortController().signal), "delivered");
  assert.equal(r.calls.length, 4);
  assert.deepEqual(r.sleeps, [1000, 2000, 4000]);
  const ids = new Set(r.calls.map((c) => c.headers["webhook-id"]));
  assert.deepEqual([...ids], [deliveryId(notice, hook)]);
  for (const c of r.calls) {
    assert.equal(c.headers["webhook-timestamp"], String(Math.floor(c.at / 1000)));
    const req = { id: c.headers["webhook-id"], timestamp: c.headers["webhook-timestamp"], signature: c.headers["webhook-signature"], body: c.body };
    assert.equal(verifyWebhookSignature("topsecret", req, Math.floor(c.at / 1000)), true);
  }
  assert.ok(r.calls.every((c) => !c.body.includes("topsecret") && !JSON.stringify(c.headers).includes("topsecret")));
});

test("a refusal (4xx) is final; running out of attempts is final", async () => {
  const refused = rig([404]);
  assert.equal(await deliverWebhook(hook, notice, refused.deps, new AbortController().signal), "failed");
  assert.equal(refused.calls.length, 1);
  const down = rig(Array(20).fill(500));
  assert.equal(await deliverWebhook(hook, notice, down.deps, new AbortController().signal), "failed");
  assert.equal(down.calls.length, DEFAULT_SCHEDULE.maxAttempts);
});

test("a URL by reference is resolved here; an unresolvable reference sends nothing", async () => {
  const r = rig([200]);
  assert.equal(await deliverWebhook({ ...hook, url: "env:HOOK_URL" }, notice, r.deps, new AbortController().signal), "delivered");
  assert.equal(r.calls[0]!.url, "https://hooks.example/from-env");
  const missing = rig([200]);
  assert.equal(await deliverWebhook({ ...hook, secret: "env:NOT_SET" }, notice, missing.deps, new AbortController().signal), "failed");
  assert.equal(missing.calls.length, 0);
});

test("stopping ends the retries without another attempt", async () => {
  const r = rig([500, 500, 500]);
  const ac = new AbortController();
  r.deps.sleep = async () => {
    ac.abort();
    throw new Error("aborted");
  };
  assert.equal(await deliverWebhook(hook, notice, r.deps, ac.signal), "stopped");
  assert.equal(r.calls.length, 1);
});
