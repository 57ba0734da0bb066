import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_SCHEDULE, delayAfter, outcomeOf } from "./retry-policy.js";

test("2xx is delivered; throttling, timeouts, 5xx and network errors are retried; other answers are final", () => {
  for (const s of [200, 201, 204]) assert.equal(outcomeOf(s), "delivered");
  for (const s of [408, 425, 429, 500, 502, 503, 504, "network-error" as const]) assert.equal(outcomeOf(s), "retry");
  for (const s of [301, 302, 400, 401, 403, 404, 410, 422]) assert.equal(outcomeOf(s), "give-up");
});

test("waits double from the base up to the cap, with ±20 % jitter, and end after the last attempt", () => {
  const mid = [1, 2, 3, 4, 5, 6, 7].map((a) => delayAfter(a, DEFAULT_SCHEDULE, 0.5));
  assert.deepEqual(mid, [1000, 2000, 4000, 8000, 16000, 32000, 60000]);
  assert.equal(delayAfter(8, DEFAULT_SCHEDULE, 0.5), undefined);
  assert.equal(delayAfter(1, DEFAULT_SCHEDULE, 0), 800);
  assert.equal(delayAfter(1, DEFAULT_SCHEDULE, 1), 1200);
  assert.equal(delayAfter(1, DEFAULT_SCHEDULE, 7), 1200, "random out of range is clamped");
});
