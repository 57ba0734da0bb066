/**
 * SCRAM-SHA-256 client side (RFC 5802 / RFC 7677) as PostgreSQL speaks it: no channel binding
 * (gs2 header "n,,"), the user name is taken from the StartupMessage so the SCRAM `n=` is empty.
 * The salted password is cached per (password, salt, iterations) so repeated connections skip PBKDF2.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);
const GS2 = "n,,";
const saltedCache = new Map<string, Buffer>();

function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function parseAttrs(s: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of s.split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) m.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return m;
}

export class ScramClient {
  private readonly nonce = randomBytes(18).toString("base64");
  private readonly clientFirstBare = `n=,r=${this.nonce}`;
  private serverSignature: Buffer | null = null;

  constructor(private readonly password: string) {}

  /** SASLInitialResponse data */
  clientFirst(): Buffer {
    return Buffer.from(GS2 + this.clientFirstBare, "utf8");
  }

  /** AuthenticationSASLContinue data → SASLResponse data */
  async clientFinal(serverFirstBuf: Buffer): Promise<Buffer> {
    const serverFirst = serverFirstBuf.toString("utf8");
    const a = parseAttrs(serverFirst);
    const r = a.get("r");
    const s = a.get("s");
    const i = Number(a.get("i"));
    if (!r || !s || !Number.isInteger(i) || i < 1) throw new Error("SCRAM: malformed server-first-message");
    if (!r.startsWith(this.nonce) || r.length === this.nonce.length) throw new Error("SCRAM: server nonce does not extend the client nonce");
    const salt = Buffer.from(s, "base64");
    const cacheKey = createHash("sha256").update(this.password).update("\0").update(s).update("\0" + i).digest("base64");
    let salted = saltedCache.get(cacheKey);
    if (!salted) {
      salted = await pbkdf2Async(this.password.normalize("NFKC"), salt, i, 32, "sha256");
      if (saltedCache.size > 1000) saltedCache.clear();
      saltedCache.set(cacheKey, salted);
    }
    const clientKey = hmac(salted, "Client Key");
    const storedKey = createHash("sha256").update(clientKey).digest();
    const withoutProof = `c=${Buffer.from(GS2).toString("base64")},r=${r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSig = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let k = 0; k < 32; k++) proof[k] = clientKey[k]! ^ clientSig[k]!;
    this.serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`, "utf8");
  }

  /** AuthenticationSASLFinal data: the server proves it knows the password too */
  verifyServerFinal(serverFinalBuf: Buffer): void {
    const a = parseAttrs(serverFinalBuf.toString("utf8"));
    if (a.has("e")) throw new Error(`SCRAM: server error ${a.get("e")}`);
    const v = a.get("v");
    if (!v || !this.serverSignature) throw new Error("SCRAM: malformed server-final-message");
    const got = Buffer.from(v, "base64");
    if (got.length !== this.serverSignature.length || !timingSafeEqual(got, this.serverSignature))
      throw new Error("SCRAM: server signature mismatch");
  }
}

/** md5 password response: "md5" + md5(md5(password + user) + salt) */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(inner).update(salt).digest("hex");
}
