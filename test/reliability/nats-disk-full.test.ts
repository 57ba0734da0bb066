/**
 * Reliability: the NATS store fills up under load, two ways: the server's max_file_store is
 * reached (JetStream refuses the write: "insufficient resources"), and (full budget, when this
 * process may mount one) the store's own file system, a small tmpfs, is full (nats-server 2.9
 * then disables JetStream altogether, and its SIGTERM shutdown can hang). The audit stream discards
 * nothing (discard new): the batch that does not fit is not stored, the node fails closed (57P03 to
 * clients, new sessions refused) and its log says the audit stream refuses or is unavailable;
 * nothing acknowledged is lost. Then the store grows (a larger limit, or a remount, and a server
 * restart where needed) and the same node serves again.
 */
import { test, type TestContext } from "node:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { budget, FULL } from "./lib/budget.js";
import { codeOf, endClient, LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";

/** a tmpfs of `mb` MiB at a fresh directory, or undefined when this process may not mount */
function smallTmpfs(mb: number): { dir: string; grow(mb: number): void; remove(): void } | undefined {
  if (process.getuid?.() !== 0 || process.env.SLUICE_RELIABILITY_NO_MOUNT) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "sluice-rel-store-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m,mode=0700`, "tmpfs", dir], { stdio: "ignore" });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return {
    dir,
    grow: (to) => execFileSync("mount", ["-o", `remount,size=${to}m`, dir], { stdio: "ignore" }),
    remove() {
      try {
        execFileSync("umount", ["-l", dir], { stdio: "ignore" });
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const PAD = "x".repeat(budget(32 * 1024, 32 * 1024));
/** statements whose text (recorded on the stream) is large, so the store fills in seconds */
const fatInsert = (marker: string) => `INSERT INTO ledger (marker) VALUES ('${marker}') RETURNING marker /* ${PAD} */`;

async function storeFills(t: TestContext, variant: "limit" | "tmpfs"): Promise<void> {
  const sizeMb = budget(4, 64);
  const fs = variant === "tmpfs" ? smallTmpfs(sizeMb) : undefined;
  if (variant === "tmpfs" && !fs) {
    t.skip("this process may not mount a tmpfs");
    return;
  }
  t.after(() => fs?.remove());
  const how = fs ? `a ${sizeMb} MiB tmpfs as the nats-server store` : `nats-server max_file_store: ${sizeMb}MB`;
  const r = new ScenarioReport(t, `nats-store-full-${variant}`, `NATS store full under load (${fs ? "file system full" : "max_file_store reached"})`);
  try {
    const workers = budget(4, 16);
    const storeDir = fs ? join(fs.dir, "store") : undefined;
    if (storeDir) mkdirSync(storeDir);
    const s = await startReliabilityStack(t, {
      label: "diskfull",
      natsStoreDir: storeDir,
      natsJetstream: [`max_file_store: ${fs ? 1024 : sizeMb}MB`],
    });
    await s.direct(LEDGER_DDL);
    r.figure("store limit", how);
    const load = new Load(s, { workers, sql: fatInsert, pauseMs: 2 }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(20, 200), 60_000), `${load.total} acknowledged`);

    r.inject(`${how}; ${workers} sessions run statements of ${PAD.length / 1024} KiB of text each until the store is full`);
    const fillAt = Date.now();
    const errorsAt = load.errors.length;
    const until = Date.now() + budget(120_000, 300_000);
    while (!load.errors.slice(errorsAt).some((e) => e.code === "57P03") && Date.now() < until) await sleep(200);
    const firstRefusal = load.errors.slice(errorsAt).find((e) => e.code === "57P03");
    r.check("statements are refused (57P03) once the store is full", !!firstRefusal, firstRefusal?.message);
    r.figure("store filled after (ms)", firstRefusal ? firstRefusal.at - fillAt : "never");
    if (fs) r.figure("store file system use when refusals began", execFileSync("df", ["-h", "--output=used,size", fs.dir], { encoding: "utf8" }).trim().split("\n").pop()!.trim());
    await sleep(2000);
    const fullAt = Date.now();
    let probe = "connected";
    try {
      const c = await s.client();
      await c.query("SELECT 1").finally(() => endClient(c));
    } catch (e) {
      probe = `${codeOf(e)}: ${(e as Error).message}`;
    }
    r.figure("a new connection while the store is full", probe);
    r.check("a new session while the store is full is refused with 57P03", probe.startsWith("57P03"), probe);
    await sleep(budget(2000, 10_000));
    const ackedFull = load.ackedSince(fullAt + 1000);
    r.figure("statements acknowledged while the store was full", ackedFull);
    r.check("nothing succeeds while the store is full (ack durability)", ackedFull === 0, `${ackedFull}`);
    const said = s.dp.runOutput().split("\n").filter((l) => /"level":(40|50)/.test(l) && /audit/i.test(l));
    r.figure("what the node logged (first warning)", said[0]?.slice(0, 400) ?? "nothing");
    r.check("the node's log says the audit stream refuses or is unavailable", said.some((l) => /audit stream (refused|is not available|unavailable)/.test(l)), said[0]?.slice(0, 200));
    const jsOk = await jetstreamManager(s.nc, { timeout: 3000 }).then((m) => m.getAccountInfo()).then(() => true, () => false);
    r.figure("JetStream API answering while the store is full", jsOk ? "yes" : "no (the server disabled JetStream)");

    r.inject(fs ? `the tmpfs grown to ${sizeMb * 8} MiB${jsOk ? "" : ", then nats-server restarted (it had disabled JetStream)"}` : `max_file_store raised to ${sizeMb * 8}MB and nats-server restarted`);
    const growAt = Date.now();
    if (fs) {
      fs.grow(sizeMb * 8);
      if (!jsOk) {
        await s.nats.stop();
        await s.nats.start();
      }
    } else {
      s.nats.setJetstream([`max_file_store: ${sizeMb * 8}MB`]);
      await s.nats.stop();
      await s.nats.start();
    }
    const grownAt = Date.now();
    r.figure("nats-server stops that needed SIGKILL", s.nats.forcedStops);
    const rUntil = Date.now() + 90_000;
    while (load.firstAckAfter(grownAt).some((x) => x === undefined) && Date.now() < rUntil) await sleep(200);
    const firsts = load.firstAckAfter(grownAt);
    const rec = firsts.every((x) => x !== undefined) ? Math.max(...(firsts as number[])) - grownAt : undefined;
    r.check("every session runs statements again once the store has room, without restarting the node", rec !== undefined);
    r.figure("recovery: store grown → every session succeeded again (ms)", rec ?? "never");
    r.figure("store grown in (ms)", grownAt - growAt);
    r.check("statements succeed after the fault", await load.waitForAcks(budget(20, 200), 60_000), `${load.total} acknowledged`);
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
    await load.stop();
    onlyErrors(r, load, ["57P03"], "the only error clients saw is 57P03 (audit stream unavailable)");
    await s.dp.stop(30_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
}

test("the NATS server's store limit is reached under load: the node fails closed and says so, then recovers", (t) => storeFills(t, "limit"));

// the file system itself full (nats-server 2.9 then disables JetStream): full budget only, it needs a mount
test("the NATS store's file system fills up under load (full budget)", { skip: !FULL && "full budget only (npm run reliability)" }, (t) => storeFills(t, "tmpfs"));
