import { test } from "node:test";
import assert from "node:assert/strict";
import { FixedHistogram } from "./fixed-histogram.js";
import { counterFrom, countersFrom, exposition, gaugeFrom, gaugesFrom, histogramFrom, newMetricsRegistry } from "./prometheus.js";

test("a fixed histogram counts each observation in the first bucket whose bound holds it", () => {
  const h = new FixedHistogram([0.001, 0.01, 0.1]);
  for (const v of [0.0005, 0.001, 0.002, 0.05, 3, NaN]) h.observe(v);
  assert.deepEqual([...h.counts], [2, 1, 1, 1]);
  assert.equal(h.count, 5, "NaN is not counted");
  assert.ok(Math.abs(h.sum - 3.0535) < 1e-12);
  assert.equal(h.cumulative(1), 3);
  assert.throws(() => new FixedHistogram([0.1, 0.01]), /ascending/);
  assert.throws(() => new FixedHistogram([]), /at least one/);
});

test("figures kept as plain numbers are read at scrape time and rendered in the Prometheus text format", async () => {
  const reg = newMetricsRegistry({ defaultMetrics: false });
  const stats = { statements: 0, byDecision: { allowed: 0, denied: 0 }, depth: 0 };
  counterFrom(reg, "t_statements_total", "statements", () => stats.statements);
  countersFrom(reg, "t_decisions_total", "by decision", "decision", () => stats.byDecision);
  gaugeFrom(reg, "t_depth", "depth", async () => stats.depth);
  gaugesFrom(reg, "t_conns", "connections by state", "state", () => ({ in_use: 2, idle: 1 }));
  const h = new FixedHistogram([0.001, 0.01]);
  histogramFrom(reg, "t_latency_seconds", "latency", h);

  stats.statements = 5;
  stats.byDecision.allowed = 3;
  stats.byDecision.denied = 2;
  stats.depth = 7;
  h.observe(0.0004);
  h.observe(0.005);
  h.observe(0.5);
  const { contentType, body } = await exposition(reg);
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  const lines = body.split("\n");
  for (const l of [
    "# TYPE t_statements_total counter",
    "t_statements_total 5",
    't_decisions_total{decision="allowed"} 3',
    't_decisions_total{decision="denied"} 2',
    "# TYPE t_depth gauge",
    "t_depth 7",
    't_conns{state="in_use"} 2',
    't_conns{state="idle"} 1',
    "# TYPE t_latency_seconds histogram",
    't_latency_seconds_bucket{le="0.001"} 1',
    't_latency_seconds_bucket{le="0.01"} 2',
    't_latency_seconds_bucket{le="+Inf"} 3',
    "t_latency_seconds_sum 0.5054",
    "t_latency_seconds_count 3",
  ]) assert.ok(lines.includes(l), `${l} in:\n${body}`);

  // a later scrape reads the numbers again (a counter never goes back, it is the source's value)
  stats.statements = 6;
  assert.ok((await reg.metrics()).split("\n").includes("t_statements_total 6"));
});

test("a registry carries prom-client's process metrics unless told not to", async () => {
  assert.match(await newMetricsRegistry().metrics(), /^process_cpu_seconds_total /m);
  assert.equal(await newMetricsRegistry({ defaultMetrics: false }).metrics(), "\n");
});
