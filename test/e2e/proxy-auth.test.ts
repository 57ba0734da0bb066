/**
 * Bad input at the door: every case gets its SQLSTATE, the proxy survives, a session opened before
 * keeps working, and no token appears in the logs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import pg from "pg";
import { SignJWT, importJWK, exportSPKI, type JWK } from "jose";
import { createDevIssuer } from "@sluice/shared/auth";
import { startProxyStack } from "./proxy-stack.js";

function b64url(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}

/** Connects with pg and returns the SQLSTATE of the refusal (or "connected"). */
async function refusal(config: pg.ClientConfig): Promise<string> {
  const c = new pg.Client(config);
  c.on("error", () => undefined);
  try {
    await c.connect();
    await c.end();
    return "connected";
  } catch (e) {
    return (e as { code?: string }).code ?? `no code: ${(e as Error).message}`;
  }
}

/** Reads whatever the proxy answers until it closes the socket. */
function rawExchange(port: number, bytes: Buffer | Buffer[], useTls = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: "127.0.0.1", port }, () => {
      for (const b of Array.isArray(bytes) ? bytes : [bytes]) s.write(b);
    });
    s.on("data", (d) => chunks.push(d));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(chunks)));
    setTimeout(() => s.destroy(), 5000).unref();
    void useTls;
  });
}

function sqlstateOf(errorFrame: Buffer): string | undefined {
  const i = errorFrame.indexOf(Buffer.from("C"), 5);
  if (errorFrame[0] !== 0x45 || i < 0) return undefined;
  return errorFrame.toString("latin1", i + 1, errorFrame.indexOf(0, i));
}

test("bad input at the door", { timeout: 120_000 }, async (t) => {
  const s = await startProxyStack(t, { dp: { maxFrameBytes: 1024 * 1024 } });
  const good = await s.token();
  const bystander = await s.pgClient(good);
  const stillWorks = async () => assert.equal((await bystander.query("SELECT 1 AS ok")).rows[0].ok, 1);
  const cfg = (password: string, extra: Partial<pg.ClientConfig> = {}) => ({ ...s.pgConfig(password), ...extra });
  const badTokens: string[] = [];
  const bad = async (name: string, token: string, expected: string[]) => {
    badTokens.push(token);
    const code = await refusal(cfg(token));
    assert.ok(expected.includes(code), `${name}: got ${code}`);
    await stillWorks();
  };

  await t.test("an expired token", () => s.dev.mint({ sub: "x", groups: ["ci"], now: new Date(Date.now() - 3_600_000), ttlSec: 60 }).then((tk) => bad("expired", tk, ["28P01"])));
  await t.test("a wrong audience", () => s.dev.mint({ sub: "x", groups: ["ci"], audience: "someone-else" }).then((tk) => bad("audience", tk, ["28P01"])));
  await t.test("a wrong issuer", async () => {
    const other = await createDevIssuer({ issuer: "http://127.0.0.1:9/elsewhere", audience: "sluice" });
    await bad("issuer", await other.mint({ sub: "x", groups: ["ci"] }), ["28P01"]);
  });
  await t.test("an unknown kid (same issuer URL, another key)", async () => {
    const impostor = await createDevIssuer({ issuer: s.dev.issuer, audience: "sluice" });
    await bad("kid", await impostor.mint({ sub: "x", groups: ["ci"] }), ["28P01"]);
  });
  await t.test("alg: none", async () => {
    const now = Math.floor(Date.now() / 1000);
    const tk = `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ iss: s.dev.issuer, aud: "sluice", sub: "x", groups: ["ci"], iat: now, exp: now + 600 })}.`;
    await bad("none", tk, ["28P01"]);
  });
  await t.test("HS256 signed with the issuer's public key", async () => {
    const pub = s.dev.jwks.keys[0] as JWK;
    const pem = await exportSPKI((await importJWK(pub, "ES256")) as Parameters<typeof exportSPKI>[0]);
    const tk = await new SignJWT({ groups: ["ci"] })
      .setProtectedHeader({ alg: "HS256", kid: pub.kid })
      .setIssuer(s.dev.issuer)
      .setAudience("sluice")
      .setSubject("x")
      .setIssuedAt()
      .setExpirationTime("10m")
      .sign(new TextEncoder().encode(pem));
    await bad("hs256", tk, ["28P01"]);
  });
  await t.test("not a JWT", () => bad("garbage token", "hunter2-not-a-jwt", ["28P01"]));
  await t.test("an identity no policy names cannot connect", async () => {
    const tk = await s.token({ groups: ["strangers"] });
    badTokens.push(tk);
    assert.equal(await refusal(cfg(tk)), "28000");
    await stillWorks();
  });
  await t.test("an unknown database", async () => {
    assert.equal(await refusal(cfg(good, { database: "no_such_resource" })), "3D000");
    await stillWorks();
  });
  await t.test("a non-TLS client when TLS is required", async () => {
    assert.equal(await refusal(cfg(good, { ssl: false })), "28000");
    await stillWorks();
  });
  await t.test("a frame longer than the configured maximum", async () => {
    const c = await s.pgClient(good);
    await assert.rejects(c.query(`SELECT '${"x".repeat(2 * 1024 * 1024)}'`), (e: Error & { code?: string }) => {
      // the proxy answers FATAL 08P01 and closes; pg reports it either as the error or as a lost connection
      assert.ok(e.code === "08P01" || /terminated|closed|ended/i.test(e.message), e.message);
      return true;
    });
    await stillWorks();
  });
  await t.test("garbage instead of a startup packet", async () => {
    const answer = await rawExchange(s.dp.port, Buffer.from("GET / HTTP/1.1\r\nHost: sluice\r\n\r\n"));
    assert.equal(sqlstateOf(answer), "08P01");
    const tiny = await rawExchange(s.dp.port, Buffer.from([0, 0, 0, 2, 1, 2, 3, 4]));
    assert.equal(sqlstateOf(tiny), "08P01");
    await stillWorks();
  });
  await t.test("GSSENCRequest gets 'N', then TLS is still required", async () => {
    const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    const startup = Buffer.from("\0\0\0\0\0\x03\0\0user\0ci\0database\0app\0\0", "latin1");
    startup.writeInt32BE(startup.length, 0);
    const answer = await rawExchange(s.dp.port, [gss, startup]);
    assert.equal(answer[0], 0x4e /* N */);
    assert.equal(sqlstateOf(answer.subarray(1)), "28000");
  });
  await t.test("bytes smuggled after SSLRequest, and TLS handshake garbage, do not hurt", async () => {
    const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    // plaintext sent together with SSLRequest would be read as if it came through TLS: refused
    const smuggled = await rawExchange(s.dp.port, Buffer.concat([ssl, Buffer.from("not TLS")]));
    assert.equal(sqlstateOf(smuggled), "08P01");
    // a client that gets 'S' and then sends no ClientHello but garbage
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = net.connect({ host: "127.0.0.1", port: s.dp.port }, () => sock.write(ssl));
      sock.on("data", (d) => {
        chunks.push(d);
        if (chunks.length === 1) sock.write("this is not a TLS ClientHello at all");
      });
      sock.on("error", reject);
      sock.on("close", () => resolve(Buffer.concat(chunks)));
      setTimeout(() => sock.destroy(), 5000).unref();
    });
    assert.equal(answer[0], 0x53 /* S */);
    await stillWorks();
  });
  await t.test("a good token after all that", async () => {
    const c = await s.pgClient(await s.token());
    assert.equal((await c.query("SELECT 'fine' AS v")).rows[0].v, "fine");
    void tls;
  });
  await t.test("no token in the logs", () => {
    const logs = s.logs();
    assert.ok(logs.includes("connection refused"));
    for (const tk of [good, ...badTokens]) assert.ok(!logs.includes(tk), "a token leaked into the logs");
  });
});

test("a startup setting that switches identity is refused; safe ones reach the upstream", { timeout: 60_000 }, async (t) => {
  const s = await startProxyStack(t);
  const token = await s.token();
  assert.equal(await refusal({ ...s.pgConfig(token), options: "-c role=postgres" } as pg.ClientConfig), "42501");
  const c = await s.pgClient(token, { options: "-c search_path=custom,public -c statement_timeout=12345" } as Partial<pg.ClientConfig>);
  const r = await c.query("SELECT current_setting('search_path') AS sp, current_setting('statement_timeout') AS st");
  assert.deepEqual(r.rows[0], { sp: "custom,public", st: "12345ms" });
});

test("direct TLS (libpq 17 sslnegotiation=direct) with ALPN postgresql", { timeout: 30_000 }, async (t) => {
  const s = await startProxyStack(t);
  const startup = Buffer.from("\0\0\0\0\0\x03\0\0user\0ci\0database\0app\0\0", "latin1");
  startup.writeInt32BE(startup.length, 0);
  const talk = (alpn: string[] | undefined) =>
    new Promise<{ alpn: string | false; answer: Buffer }>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = tls.connect({ host: "127.0.0.1", port: s.dp.port, rejectUnauthorized: false, ALPNProtocols: alpn }, () => sock.write(startup));
      sock.on("data", (d) => {
        chunks.push(d);
        sock.end();
      });
      sock.on("error", reject);
      sock.on("close", () => resolve({ alpn: sock.alpnProtocol ?? false, answer: Buffer.concat(chunks) }));
      setTimeout(() => sock.destroy(), 5000).unref();
    });
  const ok = await talk(["postgresql"]);
  assert.equal(ok.alpn, "postgresql");
  assert.equal(ok.answer[0], 0x52 /* R: AuthenticationCleartextPassword */);
  assert.equal(ok.answer.readInt32BE(5), 3);
  const noAlpn = await talk(undefined);
  assert.equal(sqlstateOf(noAlpn.answer), "08P01");
});
