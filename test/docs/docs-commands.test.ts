/**
 * The documentation's commands, run. Against one `sluice dev --demo` stack (so the stream holds a
 * pipeline's session, a blocked DROP, an approval, checkpoints):
 *  - every ```sh test block of docs/*.md, command by command, in one scratch directory where
 *    `sluice` is the checkout's CLI; a command written `! cmd` must fail, any other must succeed;
 *  - every ```sql test block with psql in a fresh database, inside a transaction rolled back;
 *  - a block marked file=PATH is that file verbatim; relative links point at files that exist;
 *  - every metric the running planes expose is explained in the operator guide.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { freePort } from "../../bin/lib/dev-nats-server.js";
import { repoRoot } from "../lib/run-sluice.js";
import { sluiceBin, startDev, testDatabase, waitForOutput } from "../lib/dev-process.js";

interface Block {
  file: string;
  line: number;
  lang: string;
  flags: string[];
  body: string;
}

const docsDir = join(repoRoot, "docs");

function blocksOf(file: string): Block[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open || !open[2]) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    out.push({ file, line: i + 1, lang: open[2], flags: open[3]!.split(/\s+/).filter(Boolean), body: body.length ? body.join("\n") + "\n" : "" });
    i = j;
  }
  return out;
}

/** One shell command per logical line (backslash continuations joined), comments skipped. */
function commandsOf(body: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (const raw of body.split("\n")) {
    const l = raw.trimEnd();
    if (!cur && (l.trim() === "" || l.trim().startsWith("#"))) continue;
    if (l.endsWith("\\")) {
      cur += l.slice(0, -1) + " ";
      continue;
    }
    out.push((cur + l).trim());
    cur = "";
  }
  return out;
}

function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv, input?: string): Promise<{ code: number; out: string }> {
  return new Promise((res, rej) => {
    const c = spawn("bash", ["-o", "pipefail", "-c", cmd], { cwd, env, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let out = "";
    c.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    c.on("error", rej);
    c.on("close", (code) => res({ code: code ?? 1, out }));
    if (input !== undefined) {
      c.stdin!.on("error", () => undefined);
      c.stdin!.end(input);
    }
  });
}

const docFiles = readdirSync(docsDir).filter((f) => f.endsWith(".md")).map((f) => join(docsDir, f));
const blocks = docFiles.flatMap(blocksOf);

test("docs: a block marked file=PATH is that file, and relative links point at files that exist", () => {
  for (const b of blocks) {
    const ref = b.flags.find((f) => f.startsWith("file="));
    if (ref) assert.equal(b.body, readFileSync(join(repoRoot, ref.slice(5)), "utf8"), `${b.file}:${b.line} is ${ref.slice(5)} verbatim`);
  }
  for (const f of docFiles) {
    for (const m of readFileSync(f, "utf8").matchAll(/\]\((?!https?:|#)([^)#\s]+)(#[^)]*)?\)/g)) {
      assert.ok(existsSync(resolve(dirname(f), m[1]!)), `${f}: link to ${m[1]} exists`);
    }
  }
  assert.ok(blocks.filter((b) => b.flags.includes("test")).length >= 8, "the docs have runnable blocks");
});

test("docs: every `sh test` and `sql test` block runs as shown against sluice dev --demo; every exposed metric is documented", { timeout: 240_000 }, async (t) => {
  const db = await testDatabase(t, "docs");
  const [httpPort, cpHttpPort] = [await freePort(), await freePort()];
  const dev = await startDev(t, ["--upstream", `postgres://postgres@127.0.0.1:5432/${db}`, "--demo", "--http-port", String(httpPort), "--cp-http-port", String(cpHttpPort)]);
  await waitForOutput(dev, "demo finished", 120_000);
  const ctx = dev.ctx();

  // a scratch directory like a user's: `sluice` on PATH, the checkout's docs/ and examples/ at hand
  const work = join(dev.dir, "work");
  const binDir = join(dev.dir, "bin");
  mkdirSync(work);
  mkdirSync(binDir);
  writeFileSync(join(binDir, "sluice"), `#!/bin/sh\nexec "${process.execPath}" "${sluiceBin}" "$@"\n`);
  chmodSync(join(binDir, "sluice"), 0o755);
  for (const d of ["docs", "examples"]) symlinkSync(join(repoRoot, d), join(work, d));
  const env: NodeJS.ProcessEnv = { ...dev.env, PATH: `${binDir}:${process.env.PATH}`, SLUICE_NATS_URL: ctx.nats!, SLUICE_NATS_PREFIX: ctx.natsPrefix ?? "" };

  let ran = 0;
  for (const b of blocks.filter((x) => x.flags.includes("test"))) {
    const where = `${b.file.slice(repoRoot.length)}:${b.line}`;
    if (b.lang === "sh") {
      for (const cmd of commandsOf(b.body)) {
        const mustFail = cmd.startsWith("! ");
        const r = await sh(mustFail ? cmd.slice(2) : cmd, work, env);
        if (mustFail) assert.notEqual(r.code, 0, `${where}: \`${cmd}\` must fail:\n${r.out}`);
        else assert.equal(r.code, 0, `${where}: \`${cmd}\` exited ${r.code}:\n${r.out}`);
        ran++;
      }
    } else if (b.lang === "sql") {
      const r = await sh(`psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d ${db} -f -`, work, env, `BEGIN;\n${b.body}ROLLBACK;\n`);
      assert.equal(r.code, 0, `${where}: the SQL runs:\n${r.out}`);
      ran++;
    } else assert.fail(`${where}: a test block must be sh or sql, got ${b.lang}`);
  }
  assert.ok(ran >= 15, `ran ${ran} documented commands`);

  // the metrics: whatever the planes expose is in the operator guide's table
  const guide = readFileSync(join(docsDir, "operator-guide.md"), "utf8");
  for (const port of [httpPort, cpHttpPort]) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    // sample lines (`name{labels} value`); a histogram's _bucket/_sum/_count belong to its family
    const names = [...new Set([...text.matchAll(/^(sluice_\w+?)(?:_bucket|_sum|_count)?[{ ]/gm)].map((m) => m[1]!))];
    assert.ok(names.length > 0, `metrics on ${port}`);
    for (const n of names) assert.ok(guide.includes("`" + n + "`"), `metric ${n} (port ${port}) is documented in docs/operator-guide.md`);
  }
});
