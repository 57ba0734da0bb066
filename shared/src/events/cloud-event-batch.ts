/**
 * The message format of SLUICE_AUDIT (contract: "Events", batches): one JetStream message carries
 * one or more consecutive events of one publisher lane as a CloudEvents JSON batch, i.e. a JSON
 * array of structured-mode events in order, `content-type: application/cloudevents-batch+json`, at
 * most 1 MiB. Pure.
 *
 * The producer keeps each event as the JSON text it hashed (HashChain.linkCanonical) and joins the
 * texts into the array, so an event is serialized once on the hot path. Readers parse the array and
 * verify each event by re-canonicalizing it; nothing depends on the producer's member order.
 */
import type { CloudEvent } from "./cloud-event.js";

export const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

/** A message never exceeds this (contract), headers included. */
export const MAX_BATCH_MESSAGE_BYTES = 1024 * 1024;
/** Room left for the NATS headers (msg id, expected sequence, content type) of a batch. */
export const BATCH_HEADER_ROOM = 4 * 1024;
/** Bytes of the JSON array a batch may take. */
export const MAX_BATCH_BYTES = MAX_BATCH_MESSAGE_BYTES - BATCH_HEADER_ROOM;

/** Size in bytes of the array `encodeBatch` writes for events of these sizes: brackets and commas. */
export function batchBytes(eventBytes: number, events: number): number {
  return eventBytes + Math.max(1, events) + 1;
}

/**
 * The batch for events given as their JSON texts, in order. `bytes`, when the caller knows it
 * (batchBytes of the events' UTF-8 sizes), lets each text be written straight into the message
 * instead of joined into one string first and measured again.
 */
export function encodeBatch(eventTexts: readonly string[], bytes?: number): Buffer {
  const joined = () => Buffer.from(`[${eventTexts.join(",")}]`, "utf8");
  if (bytes === undefined || bytes < 2) return joined();
  // 4 bytes beyond the size (a character's most): should the size be short, a text that does not
  // fit stops less than a character before the end, past `bytes`, so a wrong size never ends on it
  const out = Buffer.allocUnsafe(bytes + 4);
  let at = 0;
  out[at++] = 0x5b; // [
  for (let i = 0; i < eventTexts.length; i++) {
    if (i > 0) out[at++] = 0x2c; // ,
    if (at > bytes) return joined();
    at += out.write(eventTexts[i]!, at, "utf8");
  }
  out[at++] = 0x5d; // ]
  return at === bytes ? out.subarray(0, bytes) : joined();
}

export function isCloudEvent(v: unknown): v is CloudEvent {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const e = v as Partial<CloudEvent>;
  return e.specversion === "1.0" && typeof e.id === "string" && typeof e.type === "string" && typeof e.subject === "string";
}

/**
 * The events of one stored message. Throws when the message is not a non-empty JSON array of
 * CloudEvents 1.0 structured events: readers keep such a message verbatim (verify reports it).
 */
export function decodeBatch(bytes: Uint8Array | string): CloudEvent[] {
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  const v: unknown = JSON.parse(text);
  if (!Array.isArray(v) || v.length === 0) throw new Error("not a CloudEvents JSON batch (a non-empty array)");
  for (let i = 0; i < v.length; i++) {
    if (!isCloudEvent(v[i])) throw new Error(`batch element ${i} is not a CloudEvents 1.0 structured event`);
  }
  return v as CloudEvent[];
}
