/**
 * `sluice audit verify|export|tail`: the audit evidence, read through the control plane's
 * AuditService and checked HERE, on the client: hash chains, sequence contiguity and checkpoint
 * signatures against a pinned public key. `verify --file` checks an exported copy offline.
 */
import { readFileSync } from "node:fs";
import { AuditServiceClient, type GetSealerResponse } from "@sluice/proto";
import {
  AuditVerifier, ChunkJoiner, OcsfMapper, checkpointEvent, exportEvent, parseAuditJsonl, publicKeyFromPem, summarizeReport,
  verifyAudit, type VerifyReport,
} from "@sluice/control-plane/audit-client";
import { parseDuration } from "@sluice/shared/config";
import { sessionEventName, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { TARGET_FLAGS, UsageError, fail, parse, printJson } from "../lib/cli-kit.js";
import { withClient } from "../lib/grpc-client.js";
import { parseTimeFlag, readAudit } from "../lib/audit-read.js";

const USAGE = `usage:
  sluice audit verify [--public-key FILE] [--file EVENTS.jsonl] [--json]
  sluice audit export --format ocsf|cloudevents [--since T] [--until T] [--events-only]
  sluice audit tail [--json]
  sluice audit key [--json]              the sealer's public key (PEM) to pin
T is an ISO time or a duration back from now (30m, 2h, 7d). Common flags: --server ADDR --token JWT`;

function out(line: string): Promise<void> {
  // honour stdout back-pressure: exports can be large
  return new Promise((resolve) => (process.stdout.write(line + "\n") ? resolve() : process.stdout.once("drain", resolve)));
}

function printReport(r: VerifyReport, json: boolean | undefined): number {
  if (json) printJson(r);
  else {
    process.stdout.write(summarizeReport(r) + "\n");
    if (!r.ok && r.problems.length > 1) {
      process.stdout.write(`${r.problems.length - 1} more problem(s):\n`);
      for (const p of r.problems.slice(1, 20)) process.stdout.write(`  ${p.reason}\n`);
    }
  }
  if (!r.ok) {
    process.stderr.write(`sluice: audit verification failed at stream seq ${r.firstProblem!.streamSeq} (${r.firstProblem!.kind})\n`);
    return 1;
  }
  return 0;
}

async function verify(values: Record<string, string | boolean | undefined>): Promise<number> {
  const keyFile = values["public-key"] as string | undefined;
  let publicKey;
  if (keyFile) {
    try {
      publicKey = publicKeyFromPem(readFileSync(keyFile));
    } catch (e) {
      return fail(new SluiceError("invalid_argument", `${keyFile}: not an Ed25519 public key (${(e as Error).message})`));
    }
  }
  if (values.file) {
    let text: string;
    try {
      text = readFileSync(values.file as string, "utf8");
    } catch (e) {
      return fail(new SluiceError("invalid_argument", `cannot read ${values.file}: ${(e as NodeJS.ErrnoException).code ?? e}`));
    }
    const copy = parseAuditJsonl(text);
    if (copy.badCheckpointLines.length) {
      return fail(new SluiceError("failed_precondition", `${values.file}:${copy.badCheckpointLines[0]}: malformed checkpoint (forged or damaged)`));
    }
    return printReport(verifyAudit(copy.records, copy.checkpoints, { publicKey }), values.json as boolean);
  }
  const v = new AuditVerifier([], { publicKey });
  for await (const item of readAudit(values, { includeCheckpoints: true })) {
    if (item.record) v.add(item.record);
    else v.addCheckpoint(item.checkpoint);
  }
  return printReport(v.finish(), values.json as boolean);
}

function inRange(ev: CloudEvent, since?: string, until?: string): boolean {
  const t = new Date(Date.parse(ev.time)).toISOString();
  return (!since || t >= since) && (!until || t <= until);
}

async function exportCmd(values: Record<string, string | boolean | undefined>): Promise<number> {
  const format = values.format;
  if (format !== "ocsf" && format !== "cloudevents") throw new UsageError("--format must be ocsf or cloudevents");
  const now = new Date();
  const since = parseTimeFlag(values.since as string | undefined, now, parseDuration);
  const until = parseTimeFlag(values.until as string | undefined, now, parseDuration);
  if (format === "cloudevents") {
    // events exactly as stored plus their stream sequence; checkpoints after the event ending their range
    let lastPrinted = -1;
    for await (const item of readAudit(values, { includeCheckpoints: !values["events-only"] })) {
      if (item.record) {
        const ev = item.record.event;
        if (ev && !inRange(ev, since, until)) continue;
        await out(JSON.stringify(exportEvent(item.record)));
        lastPrinted = item.record.seq;
      } else if (item.checkpoint.lastSeq === lastPrinted) {
        await out(JSON.stringify(checkpointEvent(item.checkpoint)));
      }
    }
    return 0;
  }
  // OCSF: policy changes (SLUICE_CONTROL) first, then sessions; the mapper sees every event so a
  // statement keeps its session's identity even when the session began before --since
  const mapper = new OcsfMapper();
  const emit = async (ev: CloudEvent) => {
    for (const o of mapper.map(ev)) if (inRange({ ...ev, time: new Date(o.time).toISOString() }, since, until)) await out(JSON.stringify(o));
  };
  for await (const item of readAudit(values, { control: true })) if (item.record?.event) await emit(item.record.event);
  const joiner = new ChunkJoiner();
  for await (const item of readAudit(values, {})) {
    const ev = item.record?.event && joiner.push(item.record.event);
    if (ev) await emit(ev);
  }
  for (const o of mapper.flush()) if (inRange({ time: new Date(o.time).toISOString() } as CloudEvent, since, until)) await out(JSON.stringify(o));
  return 0;
}

function tailLine(ev: CloudEvent): string {
  const name = sessionEventName(ev.type) ?? ev.type;
  const d = ev.data as Record<string, unknown>;
  const detail =
    typeof d?.sql === "string" ? `#${d.statementId} ${d.decision} ${d.rule}: ${(d.sql as string).replace(/\s+/g, " ").slice(0, 120)}`
    : typeof d?.statementId === "number" ? `#${d.statementId}${d.commandTag ? ` ${d.commandTag}` : ""}${d.reason ? ` ${d.reason}` : ""}`
    : typeof d?.subject === "string" ? `${d.subject}`
    : typeof d?.reason === "string" ? `${d.reason}`
    : "";
  return `${ev.time}  ${ev.subject}  ${name}  ${detail}`.trimEnd();
}

async function tail(values: Record<string, string | boolean | undefined>): Promise<number> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    for await (const item of readAudit(values, { fromEnd: true, follow: true }, ac.signal)) {
      const r = item.record;
      if (!r) continue;
      if (values.json) await out(JSON.stringify(exportEvent(r)));
      else await out(r.event ? tailLine(r.event) : `seq ${r.seq}: (not an event)`);
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  return 0;
}

async function key(values: Record<string, string | boolean | undefined>): Promise<number> {
  const r = await withClient(AuditServiceClient, values, (c) => c.call<object, GetSealerResponse>("getSealer", {}));
  if (values.json) printJson(r);
  else process.stdout.write(r.publicKeyPem.endsWith("\n") ? r.publicKeyPem : r.publicKeyPem + "\n");
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...TARGET_FLAGS,
    "public-key": { type: "string" },
    file: { type: "string" },
    format: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    "events-only": { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const [sub, ...rest] = positionals;
  if (rest.length) throw new UsageError(USAGE);
  const v = values as Record<string, string | boolean | undefined>;
  switch (sub) {
    case "verify": return verify(v);
    case "export": return exportCmd(v);
    case "tail": return tail(v);
    case "key": return key(v);
    default: throw new UsageError(USAGE);
  }
}
