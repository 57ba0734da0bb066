#!/usr/bin/env node
// `npm test`: the README's test command and exactly what .ci/run runs. Uses only node's built-ins
// until the suite starts, so it works on a fresh clone: it first makes sure PostgreSQL, NATS and
// pgbouncer are installed and running (scripts/ensure-services.sh), installs the npm dependencies
// when node_modules is missing or older than the lockfile, and for the whole suite checks that the
// generated proto code is current and that everything type-checks. Then it runs every *.test.ts
// with node's built-in test runner (tsx loader); Node 20 has no glob support in `--test`, so the
// files are listed here.
// Usage: npm test [-- --unit] [-- path-substring ...]   (a subset skips the gen and type checks)
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const filters = args.filter((a) => !a.startsWith("--"));

/** Runs a set-up step in the foreground; a failed step ends the run with its exit code. */
function step(what, cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { stdio: "inherit", cwd: root });
  if (r.status !== 0) {
    console.error(`npm test: ${what} failed`);
    process.exit(r.status ?? 1);
  }
}

step("service set-up", "bash", ["scripts/ensure-services.sh"]);
const installed = join(root, "node_modules", ".package-lock.json");
if (!existsSync(installed) || statSync(join(root, "package-lock.json")).mtimeMs > statSync(installed).mtimeMs) {
  step("npm ci", "npm", ["ci", "--no-audit", "--no-fund"]);
}
// the console's assets (web/dist) and the compiled JavaScript (dist/) are build output, not
// committed: built incrementally (a no-op when current). Tests that spawn bin/sluice.js then run the
// compiled output; where it is not current (a build failed, a file edited meanwhile) the launcher
// runs the sources, never stale output, so a subset run goes on after a failed build.
if (filters.length === 0 && !unitOnly) step("build", process.execPath, ["scripts/build.mjs", "--quiet"]);
else if (spawnSync(process.execPath, ["scripts/build.mjs", "--quiet"], { stdio: "inherit", cwd: root }).status !== 0) {
  console.error("npm test: the build failed; commands run from the sources");
}
if (filters.length === 0 && !unitOnly) {
  step("generated code check", process.execPath, ["scripts/gen-proto.mjs", "--check"]);
  step("type check", process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json", "--noEmit"]);
  step("type check (console)", process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "web/tsconfig.json", "--noEmit"]);
}

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) walk(p, out);
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}

let files = [];
for (const d of ["shared", "control-plane", "data-plane", "proto", "bin", "web", "test"]) {
  try { walk(join(root, d), files); } catch { /* missing dir */ }
}
if (unitOnly) files = files.filter((f) => !f.startsWith("test/"));
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
files.sort();
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}

const concurrency = process.env.SLUICE_TEST_CONCURRENCY ?? String(Math.max(2, availableParallelism()));
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-reporter=spec", ...files],
  { stdio: "inherit", cwd: root, env: { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn" } },
);
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
