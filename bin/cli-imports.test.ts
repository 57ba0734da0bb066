/**
 * What a `sluice` command loads (issue 15: a command's start-up is mostly the modules it imports).
 * The real command (bin/sluice.js: the compiled output when current, else the sources) runs with a
 * resolve hook that names every module on stderr; each case says what must not be among them:
 * `--help` loads nothing but the command index, a command's `--help` none of the heavy parts, a
 * command that talks to the control plane the gRPC client and proto code but neither plane (`sessions
 * list` not even those: one HTTP/2 request of its own), a
 * command that reads NATS no gRPC. Module names, not times: nothing here depends on the machine's speed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { COMMANDS } from "./lib/command-index.js";

const root = fileURLToPath(new URL("..", import.meta.url));

const HOOK_BODY = `export async function resolve(s, c, next) { const r = await next(s, c); process._rawDebug("LOADED " + r.url); return r; }`;
const REGISTER = `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOK_BODY)}`)});`;
const HOOK = `data:text/javascript,${encodeURIComponent(REGISTER)}`;

interface Run {
  code: number | null;
  /** the repository's own modules and packages loaded, as paths relative to the repository */
  loaded: string[];
  stderr: string;
}

function runWithHook(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", HOOK, join(root, "bin/sluice.js"), ...args], {
      cwd: root,
      // no dev context, no control plane or NATS from the environment: nothing is reached by accident
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", SLUICE_CONTEXT: join(root, "no-such-context.json"), ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const lines = err.split("\n");
      const loaded = lines.filter((l) => l.startsWith("LOADED file://")).map((l) => fileURLToPath(l.slice("LOADED ".length)).replace(root, ""));
      resolve({ code, loaded: [...new Set(loaded)], stderr: lines.filter((l) => !l.startsWith("LOADED ")).join("\n") });
    });
  });
}

/** The launcher and the loader it may use to run the sources are not the command's. */
const LAUNCHER = /^(bin\/sluice\.js|scripts\/build-state\.mjs|node_modules\/(tsx|esbuild|get-tsconfig|resolve-pkg-maps)\/)/;

/** Parts no command's --help needs (the control plane and data plane, gRPC, NATS, the logger, the SQL parser, pg). */
const HEAVY: Array<[string, RegExp]> = [
  ["gRPC", /node_modules\/@grpc\/grpc-js\//],
  ["proto", /(^|\/)proto\/src\//],
  ["the control plane", /(^|\/)control-plane\/src\//],
  // its fleet reader and cancel-key numbering are subpaths of their own, light, for the CLI
  ["the data plane", /(^|\/)data-plane\/src\/(?!fleet\/|session\/cancel-keys\.)/],
  ["NATS", /node_modules\/@nats-io\//],
  ["pino", /node_modules\/pino\//],
  ["libpg-query", /node_modules\/libpg-query\//],
  ["pg", /node_modules\/pg\//],
];

function heavyIn(loaded: string[], allowed: string[] = []): string[] {
  return HEAVY.filter(([name]) => !allowed.includes(name)).flatMap(([name, re]) => loaded.filter((f) => re.test(f)).map((f) => `${name}: ${f}`));
}

test("sluice --help loads the command index and nothing else of the repository's or its packages", { timeout: 120_000 }, async () => {
  const r = await runWithHook(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  const own = r.loaded.filter((f) => !LAUNCHER.test(f));
  assert.ok(own.length >= 2, `the hook saw the command's modules: ${JSON.stringify(r.loaded)}`);
  for (const f of own) assert.match(f, /^(dist\/)?bin\/(cli|lib\/command-index)\.(ts|js)$/, `sluice --help loaded ${f}`);
});

test("every command's --help loads none of the heavy parts (nats-auth: NATS names in its usage)", { timeout: 300_000 }, async () => {
  for (const c of COMMANDS) {
    const r = await runWithHook([c.name, "--help"]);
    assert.equal(r.code, 0, `${c.name} --help: ${r.stderr}`);
    assert.ok(r.loaded.some((f) => f.includes(`bin/commands/${c.name}.`)), `the hook saw ${c.name}'s module`);
    assert.deepEqual(heavyIn(r.loaded, c.name === "nats-auth" ? ["NATS"] : []), [], `${c.name} --help`);
  }
});

test("a command that talks to the control plane loads the gRPC client and proto code, neither plane nor the logger", { timeout: 300_000 }, async () => {
  // nothing listens on port 1: each fails with its one line, after it has loaded what a call needs
  const target = ["--server", "127.0.0.1:1", "--token", "not-a-token"];
  for (const args of [["sessions", "show", "s1"], ["policy", "get"], ["policy", "history"], ["approvals", "list"], ["audit", "key"], ["projections", "rebuild"]]) {
    const r = await runWithHook([...args, ...target]);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^sluice: cannot reach the control plane at 127\.0\.0\.1:1/m, args.join(" "));
    assert.ok(r.loaded.some((f) => /node_modules\/@grpc\/grpc-js\//.test(f)), `${args.join(" ")} loaded gRPC`);
    assert.deepEqual(heavyIn(r.loaded, ["gRPC", "proto"]), [], args.join(" "));
  }
  // the list, the command most run against a stack, is one HTTP/2 request of its own: no gRPC, no proto code
  const list = await runWithHook(["sessions", "list", ...target]);
  assert.equal(list.code, 1, `sessions list: ${list.stderr}`);
  assert.match(list.stderr, /^sluice: cannot reach the control plane at 127\.0\.0\.1:1$/m, "sessions list");
  assert.ok(list.loaded.some((f) => /bin\/lib\/grpc-unary\./.test(f)), "sessions list loaded its HTTP/2 call");
  assert.deepEqual(heavyIn(list.loaded), [], "sessions list");
  // replaying and verifying read the audit stream: the control plane's audit client, still no plane
  for (const args of [["sessions", "replay", "s1"], ["audit", "tail"]]) {
    const r = await runWithHook([...args, ...target]);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    const planes = heavyIn(r.loaded, ["gRPC", "proto", "the control plane"]);
    assert.deepEqual(planes, [], args.join(" "));
    const cp = r.loaded.filter((f) => /(^|\/)control-plane\/src\//.test(f));
    assert.deepEqual(cp.filter((f) => !/control-plane\/src\/(audit|sealer)\//.test(f)), [], `${args.join(" ")}: only the audit client of the control plane`);
  }
});

test("a command that reads NATS loads no gRPC and not the data plane's entry point", { timeout: 120_000 }, async () => {
  for (const args of [["fleet", "status"], ["connect-info", "--resource", "orders"]]) {
    const r = await runWithHook([...args, "--nats", "nats://127.0.0.1:1"]);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^sluice: cannot reach NATS at nats:\/\/127\.0\.0\.1:1/m);
    assert.ok(r.loaded.some((f) => /node_modules\/@nats-io\//.test(f)), `${args.join(" ")} loaded the NATS client`);
    assert.deepEqual(heavyIn(r.loaded, ["NATS"]), [], args.join(" "));
  }
});
