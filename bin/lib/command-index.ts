/**
 * What `sluice --help` lists: every command with its synopsis and what it is for, without loading
 * the commands (their imports are heavy). The help test keeps it true: the same names as
 * bin/commands/, each synopsis's subcommands and flags in that command's own --help, and the same
 * commands as the README's table.
 */
export interface CommandEntry {
  name: string;
  /** subcommands and the main flags, as in the README's table */
  synopsis: string;
  summary: string;
}

export const COMMANDS: readonly CommandEntry[] = [
  { name: "dev", synopsis: "[--upstream URL] [--resource NAME] [--policy FILE] [--nats URL] [--demo]", summary: "the whole development stack in the foreground; --demo plays a pipeline's session" },
  { name: "token", synopsis: "--sub SUB [--groups a,b] [--claim k=v]... [--ttl 10m]", summary: "mint a development token from the sluice dev issuer (prints only the token)" },
  { name: "control-plane", synopsis: "[--config FILE]", summary: "run a control-plane replica (gRPC API, projections, sealer, approvals, webhooks)" },
  { name: "data-plane", synopsis: "[--config FILE] [--grace S]", summary: "run a data-plane node (the Postgres-wire proxy)" },
  { name: "policy", synopsis: "apply FILE | get | history | diff [FROM] [TO] | simulate --resource R --claims F --sql '...'", summary: "the policy bundle: validate and apply, read, history with diffs, simulate" },
  { name: "approvals", synopsis: "list | show ID | approve ID | reject ID", summary: "statements held for a human (never approved by their requester)" },
  { name: "sessions", synopsis: "list | show ID | replay ID [--follow]", summary: "recorded sessions: who connected, what ran, each decision, masked rows" },
  { name: "audit", synopsis: "verify [--public-key F] [--file JSONL] | export --format ocsf|cloudevents | tail | key", summary: "the evidence: verify chains and signed checkpoints, export (CloudEvents, OCSF), follow" },
  { name: "projections", synopsis: "rebuild", summary: "rebuild the read model from the streams" },
  { name: "fleet", synopsis: "status", summary: "data-plane nodes: region, policy revision, connections, heartbeat" },
  { name: "connect-info", synopsis: "--resource R [--region HINT] [--format uri|env|json]", summary: "the nearest healthy data plane for a pipeline, as a libpq URI or PG* variables" },
  { name: "nats-auth", synopsis: "init | server-config | user --role ROLE", summary: "NATS accounts and least-privilege credentials for each role" },
];

export function topLevelHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "usage: sluice <command> [args]",
    "",
    "sluice: an identity-aware gateway in front of PostgreSQL for machine identities (OIDC token as",
    "password, per-statement policy, approvals, masking, a hash-chained audit stream).",
    "",
    "commands:",
    ...COMMANDS.flatMap((c) => [`  ${c.name.padEnd(w)}  ${c.summary}`, `  ${" ".repeat(w)}    sluice ${c.name} ${c.synopsis}`]),
    "",
    "Every command that talks to the control plane takes --server ADDR and --token JWT (or",
    "SLUICE_CONTROL_PLANE / SLUICE_TOKEN; default: the context `sluice dev` writes), every listing",
    "--json. Exit 0 on success, 1 on a refused or failed operation (one line on stderr), 2 on a usage",
    "error (3 from `policy simulate` when approval would be required).",
    "Run 'sluice <command> --help' for a command's flags. Documentation: docs/ and examples/.",
  ].join("\n");
}
