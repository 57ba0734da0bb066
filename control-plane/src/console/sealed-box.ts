/**
 * Sealed values for cookies: AES-256-GCM over JSON with a purpose bound in as associated data, so a
 * sign-in transaction cannot be replayed as a session and neither can be read or altered in the
 * browser. Any replica holding the same key opens what another sealed. Pure apart from randomness.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";

export type SealPurpose = "session" | "login";

export class SealedBox {
  private readonly encKey: Buffer;
  private readonly macKey: Buffer;

  /** `secret`: at least 32 bytes of key material (the configured session key, or random per process). */
  constructor(secret: Buffer) {
    if (secret.length < 32) throw new Error("the console session key needs at least 32 bytes");
    this.encKey = Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), "sluice console cookie v1", 32));
    this.macKey = Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), "sluice console csrf v1", 32));
  }

  seal(purpose: SealPurpose, value: unknown): string {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.encKey, iv);
    c.setAAD(Buffer.from(purpose));
    const body = Buffer.concat([c.update(JSON.stringify(value), "utf8"), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]).toString("base64url");
  }

  /** The value, or undefined when the text was not sealed by this key for this purpose. */
  open<T>(purpose: SealPurpose, text: string | undefined): T | undefined {
    if (!text || text.length > 8192) return undefined;
    const raw = Buffer.from(text, "base64url");
    if (raw.length < 29) return undefined;
    try {
      const d = createDecipheriv("aes-256-gcm", this.encKey, raw.subarray(0, 12));
      d.setAAD(Buffer.from(purpose));
      d.setAuthTag(raw.subarray(12, 28));
      const plain = Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString("utf8");
      return JSON.parse(plain) as T;
    } catch {
      return undefined;
    }
  }

  /** A CSRF token bound to one session id (double submit: the page reads it from /api/me, sends it back in a header). */
  csrfToken(sessionId: string): string {
    return createHmac("sha256", this.macKey).update(sessionId).digest("base64url");
  }

  csrfValid(sessionId: string, token: string | undefined): boolean {
    if (!token) return false;
    const want = Buffer.from(this.csrfToken(sessionId));
    const got = Buffer.from(token);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

/** Parses a Cookie header into name → value (first occurrence wins, as browsers send the most specific first). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    const name = i < 0 ? "" : part.slice(0, i).trim();
    if (name && !out.has(name)) out.set(name, part.slice(i + 1).trim());
  }
  return out;
}

export interface CookieOptions {
  path: string;
  maxAgeSec: number;
  secure: boolean;
  sameSite: "Strict" | "Lax";
}

export function serializeCookie(name: string, value: string, o: CookieOptions): string {
  return [`${name}=${value}`, `Path=${o.path}`, `Max-Age=${Math.max(0, Math.floor(o.maxAgeSec))}`, "HttpOnly", `SameSite=${o.sameSite}`, ...(o.secure ? ["Secure"] : [])].join("; ");
}
