/**
 * One scrape of a plane's /metrics, parsed: the declared type of every metric (`# TYPE` lines, so a
 * metric with no sample yet is still seen) and every sample with its labels.
 *
 *   const s = await scrapeMetrics(node.httpPort);
 *   s.types.get("sluice_dp_policy_revision")  // "gauge"
 *   s.value("sluice_dp_statements_total", { decision: "allowed" })
 */
import assert from "node:assert/strict";

export interface Scrape {
  types: Map<string, string>;
  /** the value of one sample, by name and exact label set (undefined: absent) */
  value(name: string, labels?: Record<string, string>): number | undefined;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

export function parseMetrics(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Scrape["samples"] = [];
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const same = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length && Object.keys(a).every((k) => a[k] === b[k]);
  return { types, samples, value: (name, labels = {}) => samples.find((s) => s.name === name && same(s.labels, labels))?.value };
}

export async function scrapeMetrics(port: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}
