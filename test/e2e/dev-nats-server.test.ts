import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { startNatsServer } from "../../bin/lib/dev-nats-server.js";

const run = promisify(execFile);
const lib = fileURLToPath(new URL("../../bin/lib/dev-nats-server.ts", import.meta.url));

async function natsServersOn(storeDir: string): Promise<number[]> {
  const { stdout } = await run("ps", ["-o", "pid=,args=", "-e"]);
  return stdout
    .split("\n")
    .filter((l) => /^\s*\d+\s+nats-server\b/.test(l) && l.includes(storeDir))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

async function until(fn: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("the dev nats-server child serves JetStream and stops with stop()", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-nats-child-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = await startNatsServer({ storeDir: join(dir, "js") });
  t.after(() => s.stop());
  const nc = await connect({ servers: s.url });
  const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(nc);
  assert.ok((await jsm.getAccountInfo()).limits !== undefined);
  await nc.close();
  assert.equal((await natsServersOn(join(dir, "js"))).length, 1);
  await s.stop();
  assert.deepEqual(await natsServersOn(join(dir, "js")), []);
});

test("a parent killed with SIGKILL leaves no nats-server behind", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-nats-orphan-"));
  const store = join(dir, "js");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const parent = spawn(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e",
      `import { startNatsServer } from ${JSON.stringify(lib)}; const s = await startNatsServer({ storeDir: ${JSON.stringify(store)} }); console.log("up " + s.port); setInterval(() => {}, 1000);`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.after(async () => {
    parent.kill("SIGKILL");
    for (const pid of await natsServersOn(store)) process.kill(pid, "SIGKILL");
  });
  let out = "";
  parent.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  await until(async () => out.includes("up "), "the child server to start", 30_000);
  assert.equal((await natsServersOn(store)).length, 1);
  parent.kill("SIGKILL");
  await until(async () => (await natsServersOn(store)).length === 0, "the orphaned nats-server to stop");
});
