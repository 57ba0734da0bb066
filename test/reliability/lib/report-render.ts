/**
 * REPORT.md from the scenarios' results (scenario-report.ts): a summary table, then per scenario
 * what was injected, each check and its outcome, the figures and the errors clients saw. Pure.
 */
import type { ScenarioResult } from "./scenario-report.js";

export interface RunInfo {
  /** when each result was made is in the result itself; these describe the machine of the last run */
  commit: string;
  machine: string;
  versions: string;
  command: string;
  seconds: number;
}

/**
 * A person's reading of a scenario that did not pass (test/reliability/assessment.json): was it the
 * machine's load or a defect, and why. Bound to one run by its start time, so a later run of the
 * scenario never carries a reading of an earlier one.
 */
export interface Assessment {
  /** the `startedAt` of the result it reads */
  run: string;
  /** unclear: neither shown (say what would tell them apart) */
  verdict: "load" | "defect" | "unclear";
  text: string;
}

const STATUS = { passed: "passed", failed: "**FAILED**", error: "**ERROR** (did not finish)" } as const;

const cell = (v: unknown) => String(v ?? "–").replace(/\|/g, "\\|").replace(/\n/g, " ");

/** the first figure whose name starts with one of `prefixes` */
function fig(r: ScenarioResult, ...prefixes: string[]): string | number | undefined {
  for (const p of prefixes) {
    const k = Object.keys(r.figures).find((n) => n.startsWith(p));
    if (k) return r.figures[k];
  }
  return undefined;
}

function errorsLine(r: ScenarioResult): string {
  const e = Object.entries(r.clientErrors);
  return e.length ? e.map(([c, n]) => `${c} ×${n}`).join(", ") : "none";
}

export function renderReport(results: readonly ScenarioResult[], info: RunInfo, assessments: Readonly<Record<string, Assessment>> = {}): string {
  const out: string[] = [];
  const failed = results.filter((r) => r.status !== "passed");
  const reading = (r: ScenarioResult) => (r.status !== "passed" && assessments[r.id]?.run === r.startedAt ? assessments[r.id] : undefined);
  out.push("# sluice reliability report", "");
  out.push(
    "Written by `npm run reliability` (test/reliability/run.ts) from the results of its scenarios; do not edit by hand.",
    "Every scenario runs the real planes as processes (`bin/sluice.js control-plane`, `bin/sluice.js data-plane`)",
    "against a private nats-server and PostgreSQL on loopback, drives them with real pg clients over TLS, injects",
    "its fault, and then compares what the clients saw succeed with what the audit stream and the upstream hold.",
    "",
    `- last run: \`${info.command}\`, ${Math.round(info.seconds)} s, commit ${info.commit}`,
    `- machine: ${info.machine}`,
    `- versions: ${info.versions}`,
    `- outcome: ${results.length - failed.length} of ${results.length} scenarios passed${failed.length ? `; failing: ${failed.map((r) => `${r.id}${reading(r) ? ` (${reading(r)!.verdict}: see its section)` : ""}`).join(", ")}` : ""}`,
    "",
    "## Summary",
    "",
    "| scenario | budget | result | acknowledged to clients | acknowledged, missing from stream | client sessions affected | errors clients saw | data plane peak RSS (MiB) | recovery (ms) |",
    "|---|---|---|---|---|---|---|---|---|",
  );
  for (const r of results) {
    out.push(
      `| [${cell(r.title)}](#${r.id}) | ${r.budget} | ${STATUS[r.status]} | ${cell(fig(r, "statements acknowledged to clients"))} | ${cell(fig(r, "acknowledged but missing from the stream"))} | ${cell(fig(r, "client sessions affected"))} | ${cell(errorsLine(r))} | ${cell(fig(r, "data plane peak RSS"))} | ${cell(fig(r, "recovery"))} |`,
    );
  }
  for (const r of results) {
    out.push("", `<a id="${r.id}"></a>`, `## ${r.title}: ${STATUS[r.status]}`, "");
    out.push(`Run ${r.startedAt} (${r.budget} budget, ${r.seconds} s).`, "");
    if (r.error) out.push("The scenario did not finish:", "", "```", r.error, "```", "");
    out.push("**Injected**", "");
    for (const i of r.injected) out.push(`- ${i}`);
    if (!r.injected.length) out.push("- (nothing: the scenario stopped before its fault)");
    out.push("", "**Checked**", "");
    for (const c of r.checks) out.push(`- ${c.ok ? "✔" : "✘ FAILED:"} ${c.what}${c.detail ? ` (${c.detail})` : ""}${c.knownDefect ? ` — defect: ${c.knownDefect}` : ""}`);
    out.push("", "**Figures**", "", "| figure | value |", "|---|---|");
    for (const [k, v] of Object.entries(r.figures)) out.push(`| ${cell(k)} | ${cell(v)} |`);
    out.push("", `**Errors clients saw:** ${errorsLine(r)}`);
    if (r.notes.length) {
      out.push("", "**Notes**", "");
      for (const n of r.notes) out.push(`- ${n}`);
    }
    const a = reading(r);
    if (a) out.push("", `**Reading of this failure** (written after the run, test/reliability/assessment.json): **${{ load: "the machine's load", defect: "a defect", unclear: "not established" }[a.verdict]}** — ${a.text}`);
  }
  return out.join("\n") + "\n";
}
