import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { canonicalJson } from "@sluice/shared/events";

/** The first checkpoint of a stream links to this. */
export const CHECKPOINT_GENESIS = "0".repeat(64);

/**
 * A signed seal over stream sequences firstSeq..lastSeq of one stream (contract: SLUICE_CHECKPOINTS).
 * `chainHash` is the stream chain after lastSeq; `prevCheckpointHash` links checkpoints into a chain of
 * their own, so dropping or replacing one breaks the next.
 */
export interface Checkpoint {
  stream: string;
  firstSeq: number;
  lastSeq: number;
  count: number;
  chainHash: string;
  prevCheckpointHash: string;
  /** ISO time the checkpoint was cut */
  at: string;
  keyId: string;
  /** base64 Ed25519 signature over the canonical JSON of every other field */
  signature: string;
}

export type UnsignedCheckpoint = Omit<Checkpoint, "signature">;

function signedBytes(cp: UnsignedCheckpoint | Checkpoint): Buffer {
  const { signature: _omit, ...rest } = cp as Checkpoint;
  return Buffer.from(canonicalJson(rest), "utf8");
}

/** `ed25519:` + the first 16 hex digits of SHA-256 over the raw 32-byte public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" }) as { x?: string };
  if (!jwk.x) throw new Error("not an Ed25519 public key");
  const raw = Buffer.from(jwk.x, "base64url");
  return "ed25519:" + createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

export function signCheckpoint(cp: UnsignedCheckpoint, privateKey: KeyObject): Checkpoint {
  const signature = sign(null, signedBytes(cp), privateKey).toString("base64");
  return { ...cp, signature };
}

/** True when the signature verifies under the key. Does not check keyId: callers compare it. */
export function checkpointSignatureValid(cp: Checkpoint, publicKey: KeyObject): boolean {
  try {
    return verify(null, signedBytes(cp), publicKey, Buffer.from(cp.signature, "base64"));
  } catch {
    return false; // malformed signature or key: invalid, the caller reports it
  }
}

/** SHA-256 over the canonical JSON of the whole checkpoint, signature included. */
export function checkpointHash(cp: Checkpoint): string {
  return createHash("sha256").update(canonicalJson(cp)).digest("hex");
}

export function parseCheckpoint(bytes: Uint8Array | string): Checkpoint {
  const text = typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8");
  const v = JSON.parse(text) as Partial<Checkpoint>;
  for (const k of ["stream", "chainHash", "prevCheckpointHash", "at", "keyId", "signature"] as const) {
    if (typeof v[k] !== "string") throw new Error(`checkpoint: ${k} missing`);
  }
  for (const k of ["firstSeq", "lastSeq", "count"] as const) {
    if (!Number.isInteger(v[k])) throw new Error(`checkpoint: ${k} missing`);
  }
  return v as Checkpoint;
}

/** Reads a PEM (SPKI) public key, or a PEM private key whose public half is wanted. */
export function publicKeyFromPem(pem: string | Buffer): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`expected an Ed25519 public key, got ${key.asymmetricKeyType}`);
  return key;
}
