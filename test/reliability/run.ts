/**
 * `npm run reliability [-- name-substring ...]`: every scenario of test/reliability at its full
 * budget (SLUICE_RELIABILITY=full), one at a time, then test/reliability/REPORT.md from the results.
 * Each scenario's result is kept in test/reliability/results/<id>.json, so a run of a few scenarios
 * replaces their sections and keeps the others' (each section says when it ran). Exits with the
 * test run's status: a failing scenario fails the command and is shown as failing in the report.
 * A person's reading of a failed scenario (load or defect, and why) goes in assessment.json, keyed by
 * scenario id and bound to the run it reads; `--render-only` writes REPORT.md again from the kept
 * results without running anything (after the reading is written).
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderReport, type Assessment, type RunInfo } from "./lib/report-render.js";
import type { ScenarioResult } from "./lib/scenario-report.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = join(here, "..", "..");
const resultsDir = join(here, "results");
const filters = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.ts") && (!filters.length || filters.some((x) => f.includes(x))))
  .sort()
  .map((f) => join("test", "reliability", f));
if (!files.length) {
  console.error("reliability: no scenario file matched");
  process.exit(2);
}
mkdirSync(resultsDir, { recursive: true });

const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8" }).trim().split("\n")[0]!;
  } catch {
    return `${cmd}: not found`;
  }
};
const renderOnly = process.argv.includes("--render-only");
const t0 = Date.now();
const load0 = loadavg()[0]!;
const code = renderOnly ? 0 : await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, SLUICE_RELIABILITY: "full", SLUICE_RELIABILITY_RESULTS: resultsDir, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn" },
  });
  child.on("exit", (c, sig) => resolve(sig ? 1 : (c ?? 1)));
});

const results = readdirSync(resultsDir)
  .filter((f) => f.endsWith(".json"))
  .map((f) => JSON.parse(readFileSync(join(resultsDir, f), "utf8")) as ScenarioResult)
  .sort((a, b) => a.id.localeCompare(b.id));
const commit = existsSync(join(root, ".git")) ? version("git", ["-C", root, "rev-parse", "--short", "HEAD"]) : "unknown";
// what the run was (machine, load, duration) is kept, so a --render-only later describes the run, not itself
const runFile = join(here, "last-run.json");
const info: RunInfo = renderOnly && existsSync(runFile)
  ? (JSON.parse(readFileSync(runFile, "utf8")) as RunInfo)
  : {
      commit,
      machine: `${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${Math.round(totalmem() / 2 ** 30)} GiB, load average ${load0.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end`,
      versions: `node ${process.version}, ${version("nats-server", ["--version"])}, ${version("psql", ["--version"])}`,
      command: `npm run reliability${filters.length ? ` -- ${filters.join(" ")}` : ""}`,
      seconds: (Date.now() - t0) / 1000,
    };
if (!renderOnly) writeFileSync(runFile, JSON.stringify(info, null, 2) + "\n");
const assessmentFile = join(here, "assessment.json");
const assessments = existsSync(assessmentFile) ? (JSON.parse(readFileSync(assessmentFile, "utf8")) as Record<string, Assessment>) : {};
writeFileSync(join(here, "REPORT.md"), renderReport(results, info, assessments));
console.log(`reliability: ${results.filter((r) => r.status === "passed").length}/${results.length} scenarios passed; wrote test/reliability/REPORT.md`);
process.exit(code);
