/**
 * `sluice policy apply|get|history|diff|simulate`: a client of the control plane's PolicyService.
 * `apply` parses the file locally first so a bad document is reported (path:line:col: reason, exit 1)
 * without a round trip; the server validates again.
 */
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { ApplyPolicyResponse, GetPolicyResponse, PolicyChange, PolicyDiffResponse, PolicyHistoryResponse } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import { uuidv7 } from "@sluice/shared/events";
import { TARGET_FLAGS, UsageError, fail, parse, printJson, readContext } from "../lib/cli-kit.js";
import { loadGrpc } from "../lib/grpc-api.js";

const USAGE = `usage: sluice policy <command> [flags]
  apply FILE [--expected-revision N] [--json]   validate locally, then apply (exit 1 with path:line:col on a bad file)
  get [--json]                                  the current bundle (YAML) with its revision
  history [--json] [--limit N] [--brief]        every revision: when, who, what changed, and the diff
  diff [FROM] [TO] [--json]                     difference between two revisions (default: the last change)
  simulate --resource R (--claims F | --groups a,b) (--sql '…' | --file F) [--policy BUNDLE]
                                                decide statements as the data plane would, offline
                                                (exit 0 allow, 1 deny, 3 approval; see policy simulate --help)
common flags: --server HOST:PORT  --token TOKEN (or SLUICE_TOKEN; default: the sluice dev context)`;

function summary(changes: PolicyChange[]): string {
  if (changes.length === 0) return "no item changes";
  const sign = { added: "+", changed: "~", removed: "-" } as Record<string, string>;
  return changes.map((c) => `${sign[c.op] ?? "?"}${c.kind} ${c.name}`).join(", ");
}

/** Re-throws a failed apply with the server's first located problem as the one line. */
function located<P>(e: unknown, problemsOf: (err: unknown) => P[], formatProblem: (p: P) => string): never {
  const problems = problemsOf((e as { cause?: unknown }).cause ?? e);
  if (problems.length) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
    throw new SluiceError("invalid_argument", formatProblem(problems[0]!) + more);
  }
  throw e;
}

async function apply(file: string | undefined, flags: Record<string, unknown>): Promise<number> {
  if (!file) throw new UsageError("usage: sluice policy apply FILE");
  // against the dev stack, checked as the stack will see it: with its issuer and resource kept
  // the bundle parser and validator only here: the other subcommands never read a bundle
  const [{ formatProblem, parseBundleFile }, { keepDevParts }] = await Promise.all([import("@sluice/shared/policy"), import("../lib/dev-bundle.js")]);
  const ctx = readContext();
  const server = (flags.server as string | undefined) ?? process.env.SLUICE_CONTROL_PLANE ?? ctx?.controlPlane;
  const dev = ctx?.devParts && server === ctx.controlPlane ? ctx.devParts : undefined;
  const parsed = await parseBundleFile(file, dev && ((raw) => keepDevParts(raw, dev.issuer, dev.resource).bundle));
  if (parsed.problems.length) {
    const more = parsed.problems.length > 1 ? ` (and ${parsed.problems.length - 1} more)` : "";
    return fail(new SluiceError("invalid_argument", formatProblem(parsed.problems[0]!) + more));
  }
  const expected = flags["expected-revision"] === undefined ? 0 : Number(flags["expected-revision"]);
  if (!Number.isInteger(expected) || expected < 0) throw new UsageError("--expected-revision must be a non-negative integer");
  const { readFile } = await import("node:fs/promises");
  const text = await readFile(file, "utf8");
  const { withClient, problemsOf, proto } = await loadGrpc();
  const res = await withClient(proto.PolicyServiceClient, flags as { server?: string; token?: string }, (c) =>
    c.call<unknown, ApplyPolicyResponse>("apply", { bundleYaml: text, sourcePath: file, expectedRevision: expected, commandId: uuidv7() })
      .catch((e: unknown) => located(e, problemsOf, formatProblem)),
  );
  if (flags.json) printJson(res);
  else if (res.unchanged) process.stdout.write(`unchanged: revision ${res.revision} already is this bundle${res.duplicate ? " (re-sent command)" : ""}\n`);
  else process.stdout.write(`applied revision ${res.revision} (${res.hash.slice(0, 12)}): ${summary(res.changes)}\n`);
  if (!flags.json) for (const n of res.notes ?? []) process.stdout.write(`  ${n}\n`);
  return 0;
}

async function get(flags: Record<string, unknown>): Promise<number> {
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.PolicyServiceClient, flags, (c) => c.call<unknown, GetPolicyResponse>("get", {}));
  const s = res.snapshot;
  if (!s) {
    if (flags.json) printJson(null);
    else process.stdout.write("no policy applied yet\n");
    return 0;
  }
  if (flags.json) {
    printJson({ revision: s.revision, hash: s.hash, appliedBy: s.appliedBy, appliedAt: s.appliedAt, sourcePath: s.sourcePath, bundle: JSON.parse(s.bundleJson) });
  } else {
    process.stdout.write(`# revision ${s.revision} (${s.hash.slice(0, 12)}) applied by ${s.appliedBy} at ${s.appliedAt} from ${s.sourcePath}\n${s.bundleYaml}`);
  }
  return 0;
}

async function history(flags: Record<string, unknown>): Promise<number> {
  const limit = flags.limit === undefined ? 0 : Number(flags.limit);
  if (!Number.isInteger(limit) || limit < 0) throw new UsageError("--limit must be a non-negative integer");
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.PolicyServiceClient, flags, (c) => c.call<unknown, PolicyHistoryResponse>("history", { limit }));
  if (flags.json) {
    printJson(res.revisions);
    return 0;
  }
  if (res.revisions.length === 0) {
    process.stdout.write("no policy applied yet\n");
    return 0;
  }
  for (const r of res.revisions) {
    process.stdout.write(`revision ${r.revision}  ${r.appliedAt}  by ${r.appliedBy}  from ${r.sourcePath}  ${summary(r.changes)}\n`);
    if (!flags.brief && r.diff) process.stdout.write(r.diff.replace(/^/gm, "    ").replace(/ +$/, "") + "\n");
  }
  return 0;
}

async function diff(positionals: string[], flags: Record<string, unknown>): Promise<number> {
  const nums = positionals.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`not a revision: ${JSON.stringify(p)}`);
    return n;
  });
  if (nums.length > 2) throw new UsageError("usage: sluice policy diff [FROM] [TO]");
  const [from = 0, to = 0] = nums.length === 1 ? [nums[0]!, 0] : nums;
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.PolicyServiceClient, flags, (c) => c.call<unknown, PolicyDiffResponse>("diff", { fromRevision: from, toRevision: to }));
  if (flags.json) printJson(res);
  else process.stdout.write(res.diff || `no difference between revision ${res.fromRevision} and ${res.toRevision}\n`);
  return 0;
}

async function simulate(args: string[]): Promise<number> {
  const lib = fileURLToPath(new URL(`../lib/policy-simulate${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url));
  if (!existsSync(lib)) {
    process.stderr.write("policy simulate: not available yet\n");
    return 1;
  }
  // by URL: the module is optional (another command's), so it must not be a static dependency
  const m = (await import(pathToFileURL(lib).href)) as { runSimulate(args: string[]): Promise<number> };
  return m.runSimulate(args);
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "simulate") return simulate(rest);
  if (!sub || sub === "--help" || sub === "-h") {
    process.stdout.write(USAGE + "\n");
    return sub ? 0 : 2;
  }
  const { values, positionals } = parse(rest, {
    ...TARGET_FLAGS,
    "expected-revision": { type: "string" },
    limit: { type: "string" },
    brief: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  try {
    switch (sub) {
      case "apply":
        if (positionals.length !== 1) throw new UsageError("usage: sluice policy apply FILE");
        return await apply(positionals[0], values);
      case "get":
        return await get(values);
      case "history":
        return await history(values);
      case "diff":
        return await diff(positionals, values);
      default:
        throw new UsageError(`unknown policy command ${JSON.stringify(sub)}\n${USAGE}`);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    return fail(e);
  }
}
