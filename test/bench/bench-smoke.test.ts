/**
 * A smoke run of the benchmark harness so it cannot rot: a few seconds, tiny scale, no thresholds.
 * It checks that every scenario ran and produced numbers, never how fast anything was.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("the benchmark harness runs end to end and writes latest.json and latest.md", { timeout: 240_000 }, (t) => {
  const out = mkdtempSync(join(tmpdir(), "sluice-bench-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, ["--import", "tsx", "test/bench/run.ts", "--smoke", "--out", out], { encoding: "utf8", timeout: 230_000 });
  assert.equal(r.status, 0, r.stderr.split("\n").slice(-8).join("\n"));
  const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as {
    scenarios: Array<{ id: string; results: Record<string, { median: number; n: number; extra?: Record<string, number> }> }>;
    notes: string[];
  };
  const ids = report.scenarios.map((s) => s.id);
  for (const id of ["1-extended", "1-simple", "2", "3", "4", "5", "6"]) assert.ok(ids.includes(id), `scenario ${id} missing`);
  for (const s of report.scenarios.filter((x) => ["1-extended", "1-simple", "2", "3"].includes(x.id))) {
    for (const target of ["direct", "pgbouncer-tls"]) {
      const v = s.results[target];
      assert.ok(v && v.n >= 1 && v.median > 0, `scenario ${s.id} has no measurement for ${target}; harness notes: ${report.notes.join("; ")}`);
    }
  }
  // sluice itself must have been measured through the harness (numbers, never thresholds)
  const s1 = report.scenarios.find((x) => x.id === "1-extended")!;
  assert.ok((s1.results["sluice-ack"]?.median ?? 0) > 0, "no sluice measurement in scenario 1");
  // the audit stream per statement (issue 12): batches, events and bytes, from the node's /metrics
  const ax = s1.results["sluice-ack"]!.extra!;
  // (how many share a message depends on timing: on a busy machine a statement's completion may go
  // alone, two messages a statement; a message never holds less than one event)
  assert.ok(ax.auditMsgsPerStmt! > 0 && ax.auditMsgsPerStmt! <= ax.auditEventsPerStmt!, `messages per statement ${ax.auditMsgsPerStmt}, events ${ax.auditEventsPerStmt}`);
  assert.ok(ax.auditEventsPerStmt! >= 2, `events per statement ${ax.auditEventsPerStmt}`);
  assert.ok(ax.auditBytesPerStmt! > 0, `bytes per statement ${ax.auditBytesPerStmt}`);
  // nats-server CPU is read from the bench's own server's pid (a number, 0 if a short run saw no tick)
  assert.ok(Number.isFinite(ax.natsCpuUsPerTx) && ax.natsCpuUsPerTx! >= 0, `nats-server CPU per transaction ${ax.natsCpuUsPerTx}`);
  assert.ok(Number.isFinite(ax.load1Min), "no load average recorded with scenario 1");
  const s2 = report.scenarios.find((x) => x.id === "2")!;
  assert.ok((s2.results["sluice-masked"]?.median ?? 0) > 0, "no masked sluice measurement in scenario 2");
  const s4 = report.scenarios.find((x) => x.id === "4")!;
  assert.ok(Object.keys(s4.results).length > 0, "the policy-cost micro-benchmark produced nothing");
  const s5 = report.scenarios.find((x) => x.id === "5")!;
  assert.ok(Object.keys(s5.results).length > 0, "no RSS measurement in scenario 5");
  // connection set-up by phase inside the node, and start-up times
  const s3 = report.scenarios.find((x) => x.id === "3")!;
  assert.ok((s3.results["sluice-ack"]?.extra?.totalMs ?? 0) > 0, "no connect-phase figures in scenario 3");
  const s6 = report.scenarios.find((x) => x.id === "6")!;
  for (const k of ["sluice --help", "sluice data-plane: ready (snapshot applied)", "sluice sessions list --json (against sluice dev)"]) {
    assert.ok((s6.results[k]?.median ?? 0) > 0, `scenario 6 has no figure for ${k}; harness notes: ${report.notes.join("; ")}`);
  }
  const md = readFileSync(join(out, "latest.md"), "utf8");
  assert.match(md, /# sluice benchmark results/);
  assert.match(md, /pgbouncer-tls/);
});
