import type { ScenarioResult } from "../run.js";

interface Report {
  startedAt: string;
  finishedAt: string;
  machine: Record<string, unknown>;
  config: Record<string, unknown>;
  scenarios: ScenarioResult[];
  notes: string[];
}

const fmt = (n: number | undefined, d = 1): string =>
  n === undefined || !Number.isFinite(n) ? "–" : n >= 100 ? n.toFixed(0) : n.toFixed(d);

/** Targets the project set itself (issue 7); printed next to the measured ratios, never asserted. */
const TARGETS: Record<string, string> = {
  "1-extended": "sluice-async ≥ 0.6× pgbouncer-tls, sluice-ack ≥ 0.5× (issue 12); nats-server CPU ≤ 10 µs/tx async, ≤ 20 µs/tx ack; audit messages per statement ≤ 0.1 async, ≤ 0.2 ack; events per statement ≤ 2.3; sluice-dev ≥ 0.9× sluice-ack (issue 14)",
  "1-simple": "sluice-async ≥ 1.0× pgbouncer-tls, sluice-ack ≥ 0.8× pgbouncer-tls (issue 7); audit messages, events and bytes per statement as in 1-extended",
  "2": "unmasked ≥ 0.7× direct, masked ≥ 0.5× direct",
  "3": "sluice ≥ 0.5× pgbouncer-tls connections/s, p50 ≤ 2× pgbouncer-tls's; reuse off no worse than before the pool (issue 15; *Ms columns: mean per connection inside the node, by phase)",
  "5": "< 200 MB for 1,000 idle sessions; bounded during a large result",
  "6": "`sluice --help` and `sluice sessions list` against a running stack ≤ 300 ms (issue 15)",
  "7": "p99 ≤ 250 ms (issue 16)",
};

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  out.push(`# sluice benchmark results`, "");
  out.push(`Run ${r.startedAt} → ${r.finishedAt} on ${String(r.machine.cpus)} cores (${String(r.machine.cpuModel)}), ${String(r.machine.memGiB)} GiB, Node ${String(r.machine.node)}.`);
  out.push(`Config: ${Object.entries(r.config).map(([k, v]) => `${k}=${String(v)}`).join(", ")}. Medians with min–max over the repetitions; all targets in the same run, in alternation.`, "");
  for (const s of r.scenarios) {
    out.push(`## ${s.id}. ${s.title}`, "");
    const extraKeys = [...new Set(Object.values(s.results).flatMap((v) => Object.keys(v.extra ?? {})))];
    out.push(`| target | median ${s.unit} | min–max | n |${extraKeys.map((k) => ` ${k} |`).join("")}`);
    out.push(`|---|---|---|---|${extraKeys.map(() => "---|").join("")}`);
    for (const [name, v] of Object.entries(s.results)) {
      out.push(`| ${name} | ${fmt(v.median)} | ${fmt(v.min)}–${fmt(v.max)} | ${v.n} |${extraKeys.map((k) => ` ${fmt(v.extra?.[k], 2)} |`).join("")}`);
    }
    if (Object.keys(s.ratios).length) {
      out.push("", `Ratios: ${Object.entries(s.ratios).map(([k, v]) => `**${k}** ${fmt(v, 2)}`).join(", ")}`);
    }
    if (TARGETS[s.id]) out.push("", `Target: ${TARGETS[s.id]}.`);
    for (const n of s.notes) out.push("", `Note: ${n}`);
    out.push("");
  }
  if (r.notes.length) {
    out.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  }
  return out.join("\n");
}
