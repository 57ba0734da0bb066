#!/usr/bin/env node
// Runs every *.test.ts under the packages and test/ with node's built-in test runner (tsx loader).
// Node 20 has no glob support in `--test`, so the files are listed here.
// Usage: node scripts/test.mjs [--unit] [path-substring ...]
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";

const root = new URL("..", import.meta.url).pathname;
const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const filters = args.filter((a) => !a.startsWith("--"));

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
for (const d of ["shared", "control-plane", "data-plane", "proto", "bin", "test"]) {
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
