/**
 * Findings: minimised failing cases, one JSON file each in test/fuzz/findings/NNN-short-name.json,
 * replayed by findings.test.ts. `status: open` marks a finding not yet fixed on main: its replay is
 * a node:test todo, and the fuzz budget in `npm test` does not fail on another case with the same
 * signature (oracle + kind) while it is open; `fixed` makes both strict.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IdentityName } from "./fuzz-policy.js";
import type { Op } from "./ops.js";
import type { OracleId } from "./oracles.js";
import type { FuzzCase } from "./run-case.js";

export const FINDINGS_DIR = new URL("./findings/", import.meta.url).pathname;

export interface Finding {
  id: string;
  name: string;
  status: "open" | "fixed";
  oracle: OracleId;
  kind: string;
  /** other signatures (`oracle:kind`) the same case fails with while it is open */
  alsoFails?: string[];
  /** what goes wrong, in a sentence or two */
  summary: string;
  /** what the oracle reported when it was found */
  observed: string;
  identity: IdentityName;
  /** the policy (YAML) the case ran under; the schema and seed are fuzz-world.ts's */
  policy: string;
  ops: Op[];
  approvals: boolean[];
  found: { commit: string; seed?: number; date: string };
  fixed?: { commit: string; date: string };
}

export function loadFindings(dir = FINDINGS_DIR): Array<Finding & { file: string }> {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /^\d{3}-.*\.json$/.test(n)).sort();
  } catch {
    return [];
  }
  return names.map((n) => ({ ...(JSON.parse(readFileSync(join(dir, n), "utf8")) as Finding), file: n }));
}

export const findingCase = (f: Finding): FuzzCase => ({ identity: f.identity, ops: f.ops, approvals: f.approvals });

/**
 * The signatures the fuzz budget tolerates while their finding is open, each named by the first
 * open finding whose own signature it is, else the first that also fails with it.
 */
export function openSignatures(findings: readonly Finding[]): Map<string, string> {
  const m = new Map<string, string>();
  const open = findings.filter((f) => f.status === "open");
  for (const f of open) if (!m.has(`${f.oracle}:${f.kind}`)) m.set(`${f.oracle}:${f.kind}`, f.id);
  for (const f of open) for (const sig of f.alsoFails ?? []) if (!m.has(sig)) m.set(sig, f.id);
  return m;
}

/** writes a new finding with the next free number; returns its file name */
export function writeFinding(f: Omit<Finding, "id">, dir = FINDINGS_DIR): string {
  const used = loadFindings(dir).map((x) => Number(x.id));
  const id = String((used.length ? Math.max(...used) : 0) + 1).padStart(3, "0");
  const file = `${id}-${f.name}.json`;
  writeFileSync(join(dir, file), JSON.stringify({ id, ...f }, null, 2) + "\n");
  return file;
}
