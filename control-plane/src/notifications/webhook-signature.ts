/**
 * Webhook signatures as Standard Webhooks 1.0 defines them, so a receiver can check them with any
 * of that specification's libraries: headers `webhook-id` (the same on every retry of one
 * delivery), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
 * (`v1,<base64 HMAC-SHA256>` over `<id>.<timestamp>.<body>`). A secret of the form `whsec_<base64>`
 * is that specification's key format (the HMAC key is the decoded bytes); any other secret is used
 * as its UTF-8 bytes. Pure: the time comes in.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADERS = { id: "webhook-id", timestamp: "webhook-timestamp", signature: "webhook-signature" } as const;

/** Receivers refuse a timestamp further than this from their clock (replayed deliveries). */
export const DEFAULT_TOLERANCE_SEC = 5 * 60;

function keyOf(secret: string): Buffer {
  return secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret, "utf8");
}

function mac(secret: string, id: string, timestamp: number, body: string): Buffer {
  return createHmac("sha256", keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest();
}

/** The `webhook-signature` header value for one attempt. */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  return `v1,${mac(secret, id, timestamp, body).toString("base64")}`;
}

export interface SignedRequest {
  id: string | undefined;
  timestamp: string | undefined;
  signature: string | undefined;
  /** the raw body exactly as received */
  body: string;
}

/**
 * What a receiver does: true when one of the header's space-separated `v1,` signatures matches and
 * the timestamp is within `toleranceSec` of `nowSec`.
 */
export function verifyWebhookSignature(secret: string, req: SignedRequest, nowSec: number, toleranceSec = DEFAULT_TOLERANCE_SEC): boolean {
  if (!req.id || !req.timestamp || !req.signature || !/^\d{1,12}$/.test(req.timestamp)) return false;
  const ts = Number(req.timestamp);
  if (Math.abs(nowSec - ts) > toleranceSec) return false;
  const want = mac(secret, req.id, ts, req.body);
  return req.signature.split(" ").some((s) => {
    if (!s.startsWith("v1,")) return false;
    const got = Buffer.from(s.slice(3), "base64");
    return got.length === want.length && timingSafeEqual(got, want);
  });
}
