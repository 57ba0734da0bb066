/**
 * `sluice policy simulate`: decide SQL against a bundle exactly as the data plane would (same
 * classifier, same evaluate), without a database. The bundle is the control plane's current one
 * (PolicyService.Get) or a local file (`--policy`); the identity's groups come from a claims file
 * through an issuer's group rules (or `--groups` directly).
 *
 * Exit codes: 0 allow, 1 deny (or a failure, with a one-line reason), 3 approval required, 2 usage.
 */
import { readFile } from "node:fs/promises";
import { PolicyServiceClient, type GetPolicyResponse } from "@sluice/proto";
import { groupsFromClaims, pickIssuer } from "@sluice/shared/auth";
import { SluiceError } from "@sluice/shared/errors";
import { bundleWarnings, formatProblem, formatWarning, parseBundleFile, type Bundle } from "@sluice/shared/policy";
import { loadSqlParser, simulateSql, type StatementInfo } from "@sluice/shared/sql";
import { scrubSecrets } from "@sluice/shared/errors";
import { TARGET_FLAGS, UsageError, parse } from "./cli-kit.js";
import { withClient } from "./grpc-client.js";

const USAGE = `usage: sluice policy simulate --resource R (--claims FILE.json | --groups a,b) [--issuer NAME]
                              (--sql 'SQL' | --file F.sql) [--policy BUNDLE.yaml] [--json]
  Decides the SQL (one client message; several statements allowed) as the data plane would.
  --policy     a local bundle file (default: the control plane's current bundle)
  --claims     verified-token claims as JSON; mapped to groups by the issuer's group rules
  --issuer     which issuer verified the token: its group rules, and the policies scoped to it
               (with --claims, default: the issuer whose \`issuer\` equals the claims' iss, or
               the only issuer of the bundle; with --groups, default: none, so policies with
               \`issuers:\` do not apply)
  --groups     comma-separated groups, instead of --claims
exit: 0 allow, 1 deny, 3 approval required, 2 usage`;

const EXIT = { allow: 0, deny: 1, approve: 3 } as const;

/** Re-exported for the test and for other commands that need the same claim → issuer choice. */
export { pickIssuer };

async function loadBundle(flags: { policy?: string; server?: string; token?: string }): Promise<{ bundle: Bundle; source: string }> {
  if (flags.policy) {
    const parsed = await parseBundleFile(flags.policy);
    if (!parsed.bundle) {
      const more = parsed.problems.length > 1 ? ` (and ${parsed.problems.length - 1} more)` : "";
      throw new SluiceError("invalid_argument", formatProblem(parsed.problems[0]!) + more);
    }
    return { bundle: parsed.bundle, source: flags.policy };
  }
  const res = await withClient(PolicyServiceClient, flags, (c) => c.call<unknown, GetPolicyResponse>("get", {}));
  const s = res.snapshot;
  if (!s) throw new SluiceError("failed_precondition", "no policy applied yet on the control plane (or pass --policy FILE)");
  return { bundle: JSON.parse(s.bundleJson) as Bundle, source: `revision ${s.revision}` };
}

function statementView(s: StatementInfo) {
  return {
    text: s.text,
    kind: s.kind,
    class: s.class,
    classes: s.classes ?? [s.class],
    baseline: s.baseline ?? null,
    tables: s.tables,
    functions: s.functions,
    risks: s.risks,
  };
}

const list = (xs: readonly string[]) => (xs.length ? xs.join(", ") : "-");

/** Where output goes (the process by default; a test captures it). */
export interface SimulateIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: SimulateIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

export async function runSimulate(args: string[], io: SimulateIo = processIo): Promise<number> {
  try {
    const { values } = parse(
      args,
      {
        ...TARGET_FLAGS,
        resource: { type: "string" },
        claims: { type: "string" },
        issuer: { type: "string" },
        groups: { type: "string" },
        sql: { type: "string" },
        file: { type: "string" },
        policy: { type: "string" },
      },
      false,
    );
    if (values.help) {
      io.out(USAGE + "\n");
      return 0;
    }
    if (!values.resource) throw new UsageError("--resource is required");
    if ((values.sql === undefined) === (values.file === undefined)) throw new UsageError("pass exactly one of --sql or --file");
    if ((values.claims === undefined) === (values.groups === undefined)) throw new UsageError("pass exactly one of --claims or --groups");

    const sql = values.sql ?? (await readFile(values.file!, "utf8"));
    const { bundle, source } = await loadBundle(values);

    let groups: string[];
    let issuerName: string | undefined;
    if (values.groups !== undefined) {
      groups = values.groups.split(",").map((g) => g.trim()).filter(Boolean);
      if (values.issuer !== undefined) {
        if (!bundle.issuers.some((i) => i.name === values.issuer))
          throw new SluiceError("not_found", `no issuer named ${JSON.stringify(values.issuer)} in the bundle`);
        issuerName = values.issuer;
      }
    } else {
      let claims: Record<string, unknown>;
      try {
        claims = JSON.parse(await readFile(values.claims!, "utf8")) as Record<string, unknown>;
      } catch (e) {
        throw new SluiceError("invalid_argument", `cannot read claims ${values.claims}: ${(e as Error).message}`);
      }
      if (!claims || typeof claims !== "object" || Array.isArray(claims)) throw new SluiceError("invalid_argument", "the claims file must hold a JSON object");
      const issuer = pickIssuer(bundle, claims, values.issuer);
      issuerName = issuer.name;
      groups = groupsFromClaims(claims, issuer.groups);
    }

    await loadSqlParser();
    // the issuer scopes policies (`issuers:`) exactly as on the data plane
    const ctx = { resource: values.resource, groups, issuer: issuerName };
    const { classification, decision, perStatement } = simulateSql(bundle, ctx, sql);

    if (values.json) {
      io.out(JSON.stringify({
        decision: decision.action,
        rule: decision.rule,
        policy: decision.policy ?? null,
        reason: decision.reason,
        statementClass: decision.statementClass,
        statementIndex: decision.statementIndex,
        approval: decision.approval ?? null,
        resource: ctx.resource,
        groups,
        issuer: issuerName ?? null,
        bundle: source,
        warnings: bundleWarnings(bundle),
        parseError: classification.ok ? null : { message: classification.error, position: classification.position ?? null },
        statements: classification.ok
          ? classification.statements.map((s, i) => ({ ...statementView(s), decision: perStatement[i].action, rule: perStatement[i].rule }))
          : [],
      }, null, 2) + "\n");
    } else {
      const out: string[] = [];
      out.push(`decision:  ${decision.action}`);
      out.push(`rule:      ${decision.rule}`);
      out.push(`why:       ${decision.reason}`);
      if (decision.approval) {
        out.push(`approval:  by [${decision.approval.approvers.join(", ")}] within ${Math.round(decision.approval.timeoutMs / 1000)}s`);
      }
      out.push(`identity:  groups [${groups.join(", ")}]${issuerName ? ` (issuer ${issuerName})` : ""} on ${ctx.resource}; bundle ${source}`);
      if (!classification.ok) {
        out.push(`parse:     ${classification.error}${classification.position !== undefined ? ` at offset ${classification.position}` : ""}`);
      } else {
        classification.statements.forEach((s, i) => {
          const mark = i === decision.statementIndex && decision.action !== "allow" ? " (decides)" : "";
          out.push(`statement ${i + 1}/${classification.statements.length}${mark}: ${s.text.length > 120 ? s.text.slice(0, 117) + "..." : s.text}`);
          const rule = perStatement[i].rule;
          const how = rule.startsWith("implicit:") ? `${rule} (built in: every connected identity may, whatever classes its policies list)` : rule;
          out.push(`  class ${(s.classes ?? [s.class]).join("+")} (${s.kind}); ${perStatement[i].action} by ${how}`);
          out.push(`  tables read: ${list(s.tables.read)}; written: ${list(s.tables.write)}`);
          out.push(`  functions: ${list(s.functions)}; risks: ${list(s.risks)}`);
        });
      }
      for (const w of bundleWarnings(bundle)) out.push(formatWarning(w));
      io.out(out.join("\n") + "\n");
    }
    return EXIT[decision.action];
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`sluice: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    io.err(`sluice: ${scrubSecrets(msg.split("\n")[0] ?? msg)}\n`);
    return 1;
  }
}
