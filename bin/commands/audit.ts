/**
 * `sluice audit verify|export|tail`: the audit evidence, read through the control plane's
 * AuditService and checked HERE, on the client: hash chains, sequence contiguity from the first
 * message, checkpoint signatures against a pinned public key, and nothing left unsealed.
 * `verify --file` checks an exported copy offline.
 */
import { readFileSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import type { GetSealerResponse } from "@sluice/proto";
import type * as AuditClient from "@sluice/control-plane/audit-client";
import type { VerifyReport } from "@sluice/control-plane/audit-client";
import { sessionEventName, type CloudEvent } from "@sluice/shared/events";
import { SluiceError } from "@sluice/shared/errors";
import { TARGET_FLAGS, UsageError, fail, parse, printJson } from "../lib/cli-kit.js";
import { loadGrpc } from "../lib/grpc-api.js";
import { parseTimeFlags } from "../lib/time-flag.js";

/** What every subcommand but `key` works with, loaded once the arguments are known to be good. */
interface Deps {
  ac: typeof AuditClient;
  readAudit: typeof import("../lib/audit-read.js").readAudit;
}

const USAGE = `usage:
  sluice audit verify [--public-key FILE] [--file EVENTS.jsonl] [--wait D] [--json]
  sluice audit export --format ocsf|cloudevents [--since T] [--until T] [--events-only] [--wait D]
  sluice audit tail [--json]
  sluice audit key [--json]              the sealer's public key (PEM) to pin
T is an ISO time or a duration back from now (30m, 2h, 7d). D is how long to wait for the sealer to
seal what is stored (default 15s; 0 = do not wait). Common flags: --server ADDR --token JWT`;

function out(line: string): Promise<void> {
  // honour stdout back-pressure: exports can be large
  return new Promise((resolve) => (process.stdout.write(line + "\n") ? resolve() : process.stdout.once("drain", resolve)));
}

function printReport(r: VerifyReport, json: boolean | undefined, summarizeReport: (r: VerifyReport) => string): number {
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

async function sealer(values: Record<string, string | boolean | undefined>): Promise<GetSealerResponse> {
  const { withClient, proto } = await loadGrpc();
  return withClient(proto.AuditServiceClient, values, (c) => c.call<object, GetSealerResponse>("getSealer", {}));
}

/**
 * Waits (up to `--wait`) until the sealer has sealed every message stored now; returns the stream
 * sequence a verification or an export should stop at: the end of the last checkpoint when it
 * covers what was stored, else what was stored (whose tail then shows as unsealed).
 */
async function sealedEnd(values: Record<string, string | boolean | undefined>): Promise<{ toSeq: number; sealer: GetSealerResponse }> {
  const waitMs = values.wait === undefined ? 15_000 : values.wait === "0" ? 0 : (await import("@sluice/shared/config")).parseDuration(values.wait as string);
  let s = await sealer(values);
  const target = Number(s.auditLastSeq);
  const until = Date.now() + waitMs;
  while (Number(s.sealedThrough) < target && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    s = await sealer(values);
  }
  const sealed = Number(s.sealedThrough);
  return { toSeq: sealed >= target ? sealed : target, sealer: s };
}

async function verify(values: Record<string, string | boolean | undefined>, { ac, readAudit }: Deps): Promise<number> {
  const { AuditVerifier, parseAuditJsonl, publicKeyFromPem, summarizeReport, verifyAudit } = ac;
  const keyFile = values["public-key"] as string | undefined;
  let publicKey: KeyObject | undefined;
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
    // a copy proves something only against a key pinned beforehand: without one the report fails
    return printReport(verifyAudit(copy.messages, copy.checkpoints, { publicKey }), values.json as boolean, summarizeReport);
  }
  const { toSeq, sealer: s } = await sealedEnd(values);
  // live: without a pinned key, check against the key the control plane reports, and say so
  const keyFromServer = !publicKey;
  publicKey ??= publicKeyFromPem(s.publicKeyPem);
  const v = new AuditVerifier([], { publicKey, keyFromServer, now: Date.now() });
  if (toSeq > 0) {
    for await (const item of readAudit(values, { includeCheckpoints: true, toSeq })) {
      if (item.message) v.add(item.message);
      else v.addCheckpoint(item.checkpoint);
    }
  }
  const report = v.finish();
  if (keyFromServer && report.ok) process.stderr.write("sluice: warning: checkpoint signatures were checked against the key the control plane reports; pin it (sluice audit key > sealer.pem) and pass --public-key\n");
  return printReport(report, values.json as boolean, summarizeReport);
}

function inRange(ev: CloudEvent, since?: string, until?: string): boolean {
  const t = new Date(Date.parse(ev.time)).toISOString();
  return (!since || t >= since) && (!until || t <= until);
}

async function exportCmd(values: Record<string, string | boolean | undefined>, { ac, readAudit }: Deps): Promise<number> {
  const { ChunkJoiner, OcsfMapper, checkpointEvent, exportMessage } = ac;
  const format = values.format;
  if (format !== "ocsf" && format !== "cloudevents") throw new UsageError("--format must be ocsf or cloudevents");
  const times = await parseTimeFlags(values, new Date());
  const [since, until] = [times.since || undefined, times.until || undefined];
  if (format === "cloudevents") {
    // one event a line exactly as stored plus its message's stream sequence; checkpoints after the
    // message ending their range. Without --since/--until the copy ends at a checkpoint (after
    // waiting for the sealer), so `audit verify --file` can prove all of it.
    const { toSeq } = await sealedEnd(values);
    if (toSeq === 0) return 0;
    let lastPrinted = -1;
    for await (const item of readAudit(values, { includeCheckpoints: !values["events-only"], toSeq })) {
      if (item.message) {
        for (const line of exportMessage(item.message)) {
          const ev = line.specversion === "1.0" ? (line as unknown as CloudEvent) : undefined;
          if (ev && !inRange(ev, since, until)) continue;
          await out(JSON.stringify(line));
          lastPrinted = item.message.seq;
        }
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
  for await (const item of readAudit(values, { control: true })) for (const ev of item.message?.events ?? []) await emit(ev);
  const joiner = new ChunkJoiner();
  for await (const item of readAudit(values, {})) {
    for (const raw of item.message?.events ?? []) {
      const ev = joiner.push(raw);
      if (ev) await emit(ev);
    }
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

async function tail(values: Record<string, string | boolean | undefined>, { ac: client, readAudit }: Deps): Promise<number> {
  const { exportMessage } = client;
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    for await (const item of readAudit(values, { fromEnd: true, follow: true }, ac.signal)) {
      const m = item.message;
      if (!m) continue;
      if (values.json) for (const line of exportMessage(m)) await out(JSON.stringify(line));
      else if (m.events) for (const ev of m.events) await out(tailLine(ev));
      else await out(`seq ${m.seq}: (not a CloudEvents batch)`);
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  return 0;
}

async function key(values: Record<string, string | boolean | undefined>): Promise<number> {
  const r = await sealer(values);
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
    wait: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const [sub, ...rest] = positionals;
  if (rest.length) throw new UsageError(USAGE);
  const v = values as Record<string, string | boolean | undefined>;
  if (sub === "key") return key(v);
  if (sub !== "verify" && sub !== "export" && sub !== "tail") throw new UsageError(USAGE);
  const [ac, { readAudit }] = await Promise.all([import("@sluice/control-plane/audit-client"), import("../lib/audit-read.js")]);
  const deps: Deps = { ac, readAudit };
  switch (sub) {
    case "verify": return verify(v, deps);
    case "export": return exportCmd(v, deps);
    case "tail": return tail(v, deps);
  }
}
