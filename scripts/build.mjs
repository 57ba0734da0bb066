#!/usr/bin/env node
// `npm run build`: the console's assets (web/dist, when stale) and every package compiled by tsc to
// JavaScript under dist/ (one tsconfig.build.json per package, built incrementally with `tsc -b`):
//   dist/bin/cli.js                         the `sluice` dispatcher and its commands
//   dist/node_modules/@sluice/<package>/    each workspace package as JavaScript, with a package.json
//                                           whose exports name the .js files
// Compiled code imports `@sluice/shared/...` like the sources do; from dist/ Node finds those in
// dist/node_modules first, and every other package further up, in the repository's node_modules.
// bin/sluice.js runs dist/ when scripts/build-state.mjs says it is current, else the sources.
// Usage: node scripts/build.mjs [--quiet]
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, lstatSync } from "node:fs";
import { join, relative } from "node:path";
import { spawnSync } from "node:child_process";
import { BUILD_INFO, PACKAGES, listSources } from "./build-state.mjs";

const root = new URL("..", import.meta.url).pathname;
const quiet = process.argv.includes("--quiet");
const startedAtMs = Date.now();
const info = join(root, BUILD_INFO);
// from now on dist/ is stale for bin/sluice.js until this build has finished
rmSync(info, { force: true });

function step(what, cmd, args) {
  const r = spawnSync(cmd, args, { stdio: quiet ? ["ignore", "ignore", "inherit"] : "inherit", cwd: root });
  if (r.status !== 0) {
    console.error(`build: ${what} failed`);
    process.exit(r.status ?? 1);
  }
}

step("console build", process.execPath, [join(root, "scripts", "build-web.mjs")]);
// the sources the compiler reads, listed before it runs: a file changed meanwhile makes this build stale
const { files } = listSources(root);
step("tsc", process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-b", join(root, "tsconfig.build.json")]);

/** "./src/x.ts" → "./src/x.js" in an exports map (strings or condition objects). */
function jsExports(e) {
  if (typeof e === "string") return e.replace(/\.ts$/, ".js");
  if (e && typeof e === "object") return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, jsExports(v)]));
  return e;
}

/** A relative symlink at `at` to `target`, replaced if it points elsewhere. */
function link(target, at) {
  if (lstatSync(at, { throwIfNoEntry: false })) rmSync(at, { recursive: true, force: true });
  symlinkSync(relative(join(at, ".."), target), at);
}

for (const p of PACKAGES) {
  const src = JSON.parse(readFileSync(join(root, p, "package.json"), "utf8"));
  const out = join(root, "dist", "node_modules", "@sluice", p);
  mkdirSync(out, { recursive: true });
  const pkg = { name: src.name, version: src.version, private: true, type: "module", exports: jsExports(src.exports) };
  writeFileSync(join(out, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  // dependencies npm installed under the package itself (not hoisted) resolve from the output too
  if (existsSync(join(root, p, "node_modules"))) link(join(root, p, "node_modules"), join(out, "node_modules"));
}
// the console's assets are found next to the compiled web/assets.js, as next to the source
link(join(root, "web", "dist"), join(root, "dist", "node_modules", "@sluice", "web", "dist"));

const tmp = `${info}.tmp`;
writeFileSync(tmp, JSON.stringify({ startedAtMs, node: process.version, sources: files }) + "\n");
renameSync(tmp, info);
if (!quiet) console.error(`build: dist/ current (${files.length} sources)`);
