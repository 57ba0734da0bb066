import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { signWebhook, verifyWebhookSignature } from "./webhook-signature.js";

const body = '{"type":"approval.requested"}';

test("the signature is base64 HMAC-SHA256 over id.timestamp.body (Standard Webhooks v1)", () => {
  const expected = createHmac("sha256", "s3cret").update(`msg-1.1700000000.${body}`).digest("base64");
  assert.equal(signWebhook("s3cret", "msg-1", 1_700_000_000, body), `v1,${expected}`);
  // a whsec_ secret is that specification's key format: the key is the decoded bytes
  const key = Buffer.from("0123456789abcdef0123456789abcdef");
  const whsec = `whsec_${key.toString("base64")}`;
  assert.equal(signWebhook(whsec, "msg-1", 1_700_000_000, body), `v1,${createHmac("sha256", key).update(`msg-1.1700000000.${body}`).digest("base64")}`);
});

test("a receiver accepts the right signature and refuses a changed body, id, key, an old or future timestamp, or no header", () => {
  const sig = signWebhook("k", "id-1", 1000, body);
  const ok = { id: "id-1", timestamp: "1000", signature: sig, body };
  assert.equal(verifyWebhookSignature("k", ok, 1000), true);
  assert.equal(verifyWebhookSignature("k", { ...ok, signature: `v1,bogus ${sig}` }, 1100), true, "one of several signatures matching is enough");
  assert.equal(verifyWebhookSignature("k", { ...ok, body: body + " " }, 1000), false);
  assert.equal(verifyWebhookSignature("k", { ...ok, id: "id-2" }, 1000), false);
  assert.equal(verifyWebhookSignature("other", ok, 1000), false);
  assert.equal(verifyWebhookSignature("k", ok, 1000 + 301), false, "replayed after the tolerance");
  assert.equal(verifyWebhookSignature("k", ok, 1000 - 301), false);
  assert.equal(verifyWebhookSignature("k", { ...ok, signature: undefined }, 1000), false);
  assert.equal(verifyWebhookSignature("k", { ...ok, timestamp: "1e3" }, 1000), false);
  assert.equal(verifyWebhookSignature("k", { ...ok, signature: sig.replace("v1,", "v2,") }, 1000), false);
});
