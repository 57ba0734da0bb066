import { hash as oneShotHash } from "node:crypto";
import { canonicalJson } from "./canonical-json.js";
import { uuidv7 } from "./uuid-v7.js";

/** Event type prefix; types are `dev.sluice.<area>.<name>.v1` (contract: Events). */
export const EVENT_TYPE_PREFIX = "dev.sluice.";
export const GENESIS_HASH = "0".repeat(64);
/** A payload never exceeds this; larger ones are split into numbered chunks. */
export const MAX_EVENT_DATA_BYTES = 512 * 1024;

/** CloudEvents 1.0 structured-mode JSON with sluice's extensions (CONTRACT). */
export interface CloudEvent<D = unknown> {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: "application/json";
  data: D;
  /** per-session (or per-aggregate) sequence, 1-based */
  sluicesessionseq?: number;
  sluiceprevhash?: string;
  sluicehash?: string;
  /** the snapshot revision that decided it */
  sluicepolicyrev?: number;
}

export function eventType(name: string): string {
  return `${EVENT_TYPE_PREFIX}${name}.v1`;
}

export function dataPlaneSource(region: string, node: string): string {
  return `sluice://${region}/${node}`;
}
export const CONTROL_PLANE_SOURCE = "sluice://control-plane";

export interface NewEvent<D> {
  source: string;
  type: string;
  subject: string;
  data: D;
  time?: Date;
  id?: string;
  policyRev?: number;
}

export function makeEvent<D>(e: NewEvent<D>): CloudEvent<D> {
  const time = e.time ?? new Date();
  const ev: CloudEvent<D> = {
    specversion: "1.0",
    id: e.id ?? uuidv7(time.getTime()),
    source: e.source,
    type: e.type,
    subject: e.subject,
    time: time.toISOString(),
    datacontenttype: "application/json",
    data: e.data,
  };
  if (e.policyRev !== undefined) ev.sluicepolicyrev = e.policyRev;
  return ev;
}

/** one-shot crypto.hash: about half the cost of createHash().update().digest() per event */
function sha256Hex(text: string): string {
  return oneShotHash("sha256", text, "hex");
}

/** SHA-256 over the RFC 8785 canonical JSON of the event without `sluicehash`. */
export function hashEvent(ev: CloudEvent): string {
  const { sluicehash: _omit, ...rest } = ev;
  return sha256Hex(canonicalJson(rest));
}

/**
 * The envelope of an event for HashChain.linkCanonical. `sourceJson`, `subjectJson` and `typeJson`
 * are JSON string literals (quoted and escaped, e.g. from JSON.stringify) because they are the same
 * for every event of a session or type and are escaped once, not per event.
 */
export interface CanonicalEnvelope {
  /** a UUID: no character that JSON escapes */
  id: string;
  /** ISO 8601 (Date.toISOString): no character that JSON escapes */
  time: string;
  policyRev?: number;
  sourceJson: string;
  subjectJson: string;
  typeJson: string;
}

export interface LinkedEvent {
  seq: number;
  hash: string;
  /** the event's JSON text (structured mode), `sluicehash` included: what goes into a batch */
  json: string;
  /** `json`'s size in UTF-8 bytes */
  bytes: number;
}

/**
 * A per-session hash chain. Pure apart from hashing: each `link` stamps seq, prevhash and hash.
 */
export class HashChain {
  private seq: number;
  private prev: string;
  constructor(startSeq = 0, prevHash = GENESIS_HASH) {
    this.seq = startSeq;
    this.prev = prevHash;
  }
  link<D>(ev: CloudEvent<D>): CloudEvent<D> {
    this.linkText(ev);
    return ev;
  }
  /**
   * Links `ev` and returns its JSON text, built from the canonical text that was just hashed (one
   * serialization per event instead of two on the audit hot path). The hash is the last member; key
   * order is irrelevant to readers, who parse the JSON and re-canonicalize to verify.
   */
  linkJson<D>(ev: CloudEvent<D>): string {
    const text = this.linkText(ev);
    // `text` is a non-empty object ("{…}"), so the hash goes in before its closing brace
    return `${text.slice(0, -1)},"sluicehash":"${ev.sluicehash!}"}`;
  }
  /**
   * Links an event given as its envelope and the canonical JSON text of its data, without building
   * the event object: the envelope's canonical text is written directly, members in RFC 8785 order.
   * The audit hot path serializes each payload exactly once this way, and that one text serves the
   * size check, the hash and the wire. Equal, byte for byte, to `linkJson` of the same event (a
   * property test holds it to that).
   */
  linkCanonical(env: CanonicalEnvelope, dataText: string): LinkedEvent {
    if (env.policyRev !== undefined && !Number.isFinite(env.policyRev)) throw new TypeError("canonicalJson: non-finite number");
    this.seq += 1;
    // RFC 8785 member order: data, datacontenttype, id, sluicepolicyrev, sluiceprevhash,
    // sluicesessionseq, source, specversion, subject, time, type
    // id (a UUID) and time (ISO 8601) hold no character JSON escapes: quoted as they are
    const text =
      `{"data":${dataText},"datacontenttype":"application/json","id":"${env.id}",` +
      (env.policyRev === undefined ? "" : `"sluicepolicyrev":${JSON.stringify(env.policyRev)},`) +
      `"sluiceprevhash":"${this.prev}","sluicesessionseq":${this.seq},"source":${env.sourceJson},` +
      `"specversion":"1.0","subject":${env.subjectJson},"time":"${env.time}","type":${env.typeJson}}`;
    const hash = sha256Hex(text);
    this.prev = hash;
    const json = `${text.slice(0, -1)},"sluicehash":"${hash}"}`;
    // measured on `text`, which hashing left flat, not on `json`, a rope that measuring would copy
    // whole: the hash member is ASCII, so it adds as many bytes as characters
    return { seq: this.seq, hash, json, bytes: Buffer.byteLength(text, "utf8") + (json.length - text.length) };
  }
  /** stamps seq, prevhash and hash; returns the canonical text of the event without its hash */
  private linkText<D>(ev: CloudEvent<D>): string {
    this.seq += 1;
    ev.sluicesessionseq = this.seq;
    ev.sluiceprevhash = this.prev;
    // canonicalJson omits undefined members, so this is the event "without sluicehash"
    // (assigning undefined rather than `delete` keeps the object's fast shape)
    if (ev.sluicehash !== undefined) ev.sluicehash = undefined;
    const text = canonicalJson(ev);
    ev.sluicehash = sha256Hex(text);
    this.prev = ev.sluicehash;
    return text;
  }
  get lastSeq(): number {
    return this.seq;
  }
  get lastHash(): string {
    return this.prev;
  }
}

export interface ChainProblem {
  index: number;
  eventId: string;
  seq: number | undefined;
  reason: string;
}

/** Verifies one chain of events (in the order given). Returns the first problem or undefined. */
export function verifyChain(events: readonly CloudEvent[], startSeq = 0, prevHash = GENESIS_HASH): ChainProblem | undefined {
  let seq = startSeq;
  let prev = prevHash;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i]!;
    const at = { index: i, eventId: ev.id, seq: ev.sluicesessionseq };
    if (ev.sluicesessionseq !== seq + 1) {
      return { ...at, reason: ev.sluicesessionseq! <= seq
        ? `sequence ${ev.sluicesessionseq} out of order after ${seq}`
        : `sequence gap: expected ${seq + 1}, found ${ev.sluicesessionseq}` };
    }
    if (ev.sluiceprevhash !== prev) return { ...at, reason: `prevhash does not match the hash of event ${seq}` };
    if (ev.sluicehash !== hashEvent(ev)) return { ...at, reason: "hash does not match the event content (altered)" };
    seq = ev.sluicesessionseq!;
    prev = ev.sluicehash!;
  }
  return undefined;
}

export function encodeEvent(ev: CloudEvent): Uint8Array {
  return Buffer.from(JSON.stringify(ev), "utf8");
}

export function decodeEvent(bytes: Uint8Array): CloudEvent {
  const ev = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")) as CloudEvent;
  if (ev.specversion !== "1.0" || typeof ev.id !== "string" || typeof ev.type !== "string") {
    throw new Error("not a CloudEvents 1.0 structured event");
  }
  return ev;
}

/**
 * Splits a large string payload into numbered chunks whose JSON stays below the cap.
 * Callers put `{ chunk: i, chunks: n, ...}` into separate events.
 */
export function chunkString(s: string, maxBytes = MAX_EVENT_DATA_BYTES - 4096): string[] {
  const bytes = Buffer.byteLength(s, "utf8");
  if (bytes <= maxBytes) return [s];
  if (bytes === s.length) {
    // ASCII only (any other character takes more bytes than UTF-16 units): a byte is a character,
    // so the parts are slices, without encoding the text and decoding each part (a 1 MiB statement)
    const out: string[] = [];
    for (let start = 0; start < s.length; start += maxBytes) out.push(s.slice(start, start + maxBytes));
    return out;
  }
  const buf = Buffer.from(s, "utf8");
  if (buf.length <= maxBytes) return [s];
  const out: string[] = [];
  let start = 0;
  while (start < buf.length) {
    let end = Math.min(start + maxBytes, buf.length);
    // do not cut a UTF-8 sequence: back off while on a continuation byte
    while (end < buf.length && (buf[end]! & 0xc0) === 0x80) end--;
    out.push(buf.subarray(start, end).toString("utf8"));
    start = end;
  }
  return out;
}
