/**
 * Issue 11: "unauthenticated connections must not be able to fill the audit buffer that
 * authenticated sessions need". An attacker without a token opens connection after connection
 * with garbage passwords while the audit stream is down (so every recorded event waits in the
 * node's bounded buffer). With the per-source limiter, after its burst the attacker's connections
 * are refused with 53300 before anything is recorded (and after ten of those closed at accept), and an authenticated session still connects
 * and runs its statements, which are all on the stream once it is back; without the limiter the
 * same storm fills the buffer and the authenticated session is refused (57P03). Meanwhile a
 * session that was already connected keeps being answered.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { SessionEventType, type SessionDeniedData } from "@sluice/shared/events";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack, testEnforcer, type ProxyStack } from "./proxy-stack.js";
import { randomPrefix, readStream, recorderOn, restartableAuditStream } from "./audit-recording-support.js";

const T = (n: keyof typeof SessionEventType) => SessionEventType[n];
const execFileP = promisify(execFile);
const root = new URL("../..", import.meta.url).pathname;

/** the attacker's source address (all of 127.0.0.0/8 is this machine): the sessions come from 127.0.0.1 */
const ATTACKER = "127.0.0.66";
const BURST = 20;
const PER_SECOND = 0.1;
const PARALLEL = 12;

/** a pg socket from `localAddress` */
const from = (localAddress: string) => () => {
  const sock = new net.Socket();
  const connect = sock.connect.bind(sock) as (o: net.TcpSocketConnectOpts) => net.Socket;
  (sock as unknown as { connect(port: number, host: string): net.Socket }).connect = (port, host) => connect({ port, host, localAddress });
  return sock;
};

/** one connection with `token` from the attacker's address: the SQLSTATE and message it was refused with */
async function attempt(s: ProxyStack, token: string): Promise<{ code: string; message: string }> {
  const c = new pg.Client({ ...s.pgConfig(token), connectionTimeoutMillis: 60_000, stream: from(ATTACKER) });
  c.on("error", () => undefined);
  try {
    await c.connect();
    await c.end();
    return { code: "connected", message: "" };
  } catch (e) {
    return { code: (e as pg.DatabaseError).code ?? "none", message: (e as Error).message };
  }
}

/**
 * `n` connections with a garbage token from the attacker's address, `parallel` at a time, from a
 * process of its own (so that the attacker's TLS work is not this process's, where the node runs)
 */
async function storm(s: ProxyStack, n: number, parallel: number): Promise<Array<{ code: string; message: string }>> {
  const code = `
    import pg from "pg";
    import net from "node:net";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
    const [port, n, parallel, localAddress] = process.argv.slice(1);
    const out = [];
    let next = 0;
    const stream = () => {
      const sock = new net.Socket();
      const connect = sock.connect.bind(sock);
      sock.connect = (p, host) => connect({ port: p, host, localAddress });
      return sock;
    };
    await Promise.all(Array.from({ length: Number(parallel) }, async () => {
      while (next < Number(n)) {
        next++;
        const c = new pg.Client({ host: "127.0.0.1", port: Number(port), database: "app", user: "ci", password: "not-a-token", ssl: { rejectUnauthorized: false }, stream, connectionTimeoutMillis: 60000 });
        c.on("error", () => undefined);
        try { await c.connect(); await c.end(); out.push({ code: "connected", message: "" }); }
        catch (e) { out.push({ code: e.code ?? "none", message: e.message }); }
      }
    }));
    process.stdout.write(JSON.stringify(out));`;
  const { stdout } = await execFileP(process.execPath, ["--input-type=module", "-e", code, String(s.dp.port), String(n), String(parallel), ATTACKER], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout);
}

async function setup(t: TestContext, limit: boolean) {
  const nats = await restartableAuditStream(t, `storm${randomPrefix()}`);
  // async durability: during the outage events wait in a buffer of 150
  const publisher = recorderOn(t, nats.nc, nats.names, "async", { bufferEvents: 150, publishTimeoutMs: 1000, ackWaitMs: 1000 });
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 0, maxBytesPerStatement: 0 });
  const s = await startProxyStack(t, { dp: { audit, enforcer: testEnforcer, failedHandshakes: limit ? { burst: BURST, perSecond: PER_SECOND } : false } });
  return { nats, publisher, s };
}

test("a storm of failed handshakes during an audit outage: refused after its burst, recorded within it; an authenticated session connects and is recorded", { timeout: 240_000 }, async (t) => {
  const { nats, publisher, s } = await setup(t, true);
  const before = await s.pgClient(await s.token({ sub: "already-connected" }));
  const baseline: number[] = [];
  for (let i = 0; i < 3; i++) {
    const at = performance.now();
    await before.query(`SELECT ${i} AS b_${i}`);
    baseline.push(performance.now() - at);
  }
  await nats.stop();

  // the connected session is answered while the storm goes on
  let storming = true;
  const during: number[] = [];
  // (a few, spaced out: each is two events in the buffer the outage does not drain)
  const answered = (async () => {
    for (let i = 0; storming && i < 10; i++) {
      const at = performance.now();
      assert.equal((await before.query(`SELECT ${i} AS n_${i}`)).rows[0][`n_${i}`], i);
      if (storming) during.push(performance.now() - at);
      await sleep(150);
    }
  })();
  const stormAt = performance.now();
  const results = await storm(s, 120, PARALLEL);
  const stormSeconds = (performance.now() - stormAt) / 1000;
  storming = false;
  await answered;

  const codes = new Map<string, number>();
  for (const r of results) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
  // at most the burst, what came back meanwhile, and the attempts already past the check when it ran out
  const bound = BURST + Math.ceil(PER_SECOND * stormSeconds) + PARALLEL;
  assert.ok((codes.get("28P01") ?? 0) <= bound, `at most ${bound} were verified: ${JSON.stringify([...codes])}`);
  const told = codes.get("53300") ?? 0;
  // closed unanswered: the client sees the connection reset or ended
  const closed = results.filter((r) => !["28P01", "53300", "connected"].includes(r.code)).length;
  assert.ok(told >= 10, `refused for their source, with the reason: ${JSON.stringify([...codes])}`);
  assert.ok(told + closed >= 90, `the rest were refused (53300) or, once told enough, closed unanswered: ${JSON.stringify([...codes])}`);
  const limited = results.find((r) => r.code === "53300")!;
  assert.match(limited.message, /^too many failed connection attempts from this address; try again in \d+ s$/);
  assert.ok(during.length > 0, "the connected session was answered during the storm");
  assert.equal(s.dp.stats().sessions, 1, "and is still there");

  // a valid token from the attacker's own address is refused too (the limit is the address's)
  const same = await attempt(s, await s.token({ sub: "same-address" }));
  assert.notEqual(same.code, "connected");
  // the buffer still has room for an authenticated session from elsewhere: it connects and runs statements
  const victim = await s.pgClient(await s.token({ sub: "victim" }));
  for (let i = 0; i < 5; i++) await victim.query(`SELECT ${i} AS v`);
  await victim.end();

  await nats.restart();
  await publisher.flush(30_000);
  const evs = (await readStream(nats.nc, nats.names.auditStream)).map((x) => x.ev);
  const denied = evs.filter((e) => e.type === T("session.denied"));
  assert.equal(denied.length, codes.get("28P01") ?? 0, "every verified refusal is recorded, the limited ones are not");
  assert.ok(denied.every((e) => (e.data as SessionDeniedData).sqlstate === "28P01"));
  const started = evs.filter((e) => e.type === T("session.started"));
  assert.equal(started.length, denied.length + 2, "session.started for the refused within the burst and the two sessions");
  const auth = evs.filter((e) => e.type === T("session.authenticated")).map((e) => (e.data as { subject: string }).subject);
  assert.deepEqual(auth.sort(), ["already-connected", "victim"]);
  const victimId = evs.find((e) => e.type === T("session.authenticated") && (e.data as { subject: string }).subject === "victim")!.subject;
  assert.equal(evs.filter((e) => e.subject === victimId && e.type === T("statement.allowed")).length, 5, "the victim's statements are all recorded");
  t.diagnostic(`storm: ${JSON.stringify(Object.fromEntries(codes))}; the connected session's statements before it: p50 ${median(baseline).toFixed(1)} ms; during it: ${during.length}, p50 ${median(during).toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms`);
});

test("without the limiter the same storm fills the buffer and the authenticated session is refused (what the limiter prevents)", { timeout: 240_000 }, async (t) => {
  const { nats, s } = await setup(t, false);
  await nats.stop();
  const results = await storm(s, 120, PARALLEL);
  assert.ok(results.every((r) => r.code === "28P01" || r.code === "57P03"), JSON.stringify(results.slice(0, 3)));
  await assert.rejects(s.pgClient(await s.token({ sub: "victim" })), (e: pg.DatabaseError) => e.code === "57P03");
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
