/**
 * `npm run build` and the launcher (issue 15): bin/sluice.js runs the compiled JavaScript only when
 * it is current with the sources, and the sources otherwise, never stale output. The decision is
 * tested on a miniature checkout (its own bin/sluice.js, build-state, a "compiled" and a "source"
 * dispatcher that say which one ran) whose file times are set explicitly; the real build is then
 * checked to produce a dist/ that runs the same commands as the sources.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../lib/run-sluice.js";
import { BUILD_INFO, listSources as list, staleReason as stale } from "../../scripts/build-state.mjs";

/** A checkout with one source per root, the launcher, and dispatchers that print which one ran. */
function miniature(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-launcher-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const d of ["bin", "scripts", "dist/bin", "shared/src"]) mkdirSync(join(dir, d), { recursive: true });
  cpSync(join(repoRoot, "bin", "sluice.js"), join(dir, "bin", "sluice.js"));
  cpSync(join(repoRoot, "scripts", "build-state.mjs"), join(dir, "scripts", "build-state.mjs"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  symlinkSync(join(repoRoot, "node_modules"), join(dir, "node_modules"));
  writeFileSync(join(dir, "bin", "cli.ts"), 'const from: string = "source";\nconsole.log(from);\n');
  writeFileSync(join(dir, "shared", "src", "a.ts"), "export const a = 1;\n");
  writeFileSync(join(dir, "shared", "src", "a.test.ts"), "// tests are not compiled\n");
  writeFileSync(join(dir, "dist", "bin", "cli.js"), 'console.log("dist");\n');
  return dir;
}

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));

function built(dir: string, startedAt: Date): void {
  writeFileSync(join(dir, BUILD_INFO), JSON.stringify({ startedAtMs: startedAt.getTime(), sources: list(dir).files }));
}

function launch(dir: string, env: Record<string, string> = {}): string {
  const r = spawnSync(process.execPath, [join(dir, "bin", "sluice.js")], { encoding: "utf8", env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env } });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test("the launcher runs dist only when it is current; edited, added or removed sources run from source", (t) => {
  const dir = miniature(t);
  const sources = ["bin/cli.ts", "shared/src/a.ts"];
  for (const f of [...sources, "package.json"]) utimesSync(join(dir, f), at(0), at(0));
  assert.deepEqual(list(dir).files, sources, "test files are not sources");

  assert.equal(stale(dir), "not built");
  assert.equal(launch(dir), "source");

  built(dir, at(10));
  assert.equal(stale(dir), null);
  assert.equal(launch(dir), "dist");
  assert.equal(launch(dir, { SLUICE_RUN: "source" }), "source", "SLUICE_RUN=source forces the sources");

  // a source changed after the build started
  utimesSync(join(dir, "shared", "src", "a.ts"), at(11), at(11));
  assert.equal(stale(dir), "sources changed");
  assert.equal(launch(dir), "source");
  built(dir, at(12));
  assert.equal(launch(dir), "dist");

  // a package.json shapes the output (its exports) as much as a source does
  writeFileSync(join(dir, "shared", "package.json"), "{}");
  utimesSync(join(dir, "shared", "package.json"), at(13), at(13));
  assert.equal(stale(dir), "sources changed");
  built(dir, at(14));

  // a new source, with an old time (a file restored from elsewhere)
  writeFileSync(join(dir, "shared", "src", "b.ts"), "export const b = 2;\n");
  utimesSync(join(dir, "shared", "src", "b.ts"), at(0), at(0));
  assert.equal(stale(dir), "sources added or removed");
  assert.equal(launch(dir), "source");
  built(dir, at(15));
  assert.equal(launch(dir), "dist");

  rmSync(join(dir, "shared", "src", "b.ts"));
  assert.equal(stale(dir), "sources added or removed");

  // a build under way removes the stamp first
  rmSync(join(dir, BUILD_INFO));
  assert.equal(launch(dir), "source");
});

test("without tsx, stale output is refused with a one-line reason, never run", (t) => {
  const dir = miniature(t);
  rmSync(join(dir, "node_modules"));
  const r = spawnSync(process.execPath, [join(dir, "bin", "sluice.js")], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^sluice: the compiled output is not current \(not built\) and tsx is not installed to run the sources: run npm run build\n$/);
});

test("npm run build compiles every package to dist/, and the compiled command answers like the sources", () => {
  const b = spawnSync(process.execPath, [join(repoRoot, "scripts", "build.mjs"), "--quiet"], { cwd: repoRoot, encoding: "utf8" });
  assert.equal(b.status, 0, b.stderr);
  assert.equal(stale(repoRoot), null);
  for (const p of ["proto", "shared", "data-plane", "control-plane", "web"]) {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "dist", "node_modules", "@sluice", p, "package.json"), "utf8")) as { exports: Record<string, string> };
    const src = JSON.parse(readFileSync(join(repoRoot, p, "package.json"), "utf8")) as { exports: Record<string, string> };
    assert.deepEqual(Object.keys(pkg.exports), Object.keys(src.exports), p);
    for (const target of Object.values(pkg.exports)) assert.match(target, /\.js$/, `${p} exports JavaScript`);
  }
  for (const args of [["--help"], ["policy", "--help"], ["sessions", "--help"], ["no-such-command"]]) {
    const compiled = spawnSync(process.execPath, [join(repoRoot, "dist", "bin", "cli.js"), ...args], { encoding: "utf8" });
    const source = spawnSync(process.execPath, [join(repoRoot, "bin", "sluice.js"), ...args], { encoding: "utf8", env: { ...process.env, SLUICE_RUN: "source" } });
    assert.equal(compiled.status, source.status, args.join(" "));
    assert.equal(compiled.stdout, source.stdout, args.join(" "));
    assert.equal(compiled.stderr, source.stderr, args.join(" "));
  }
});
