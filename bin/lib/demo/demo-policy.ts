/**
 * The demo's policy, spelled out in full rather than leaning on what a class happens to cover today:
 * a CI identity is recognised by its repository and branch claims (as a GitHub Actions token would
 * be), may read and write, must have schema changes approved by a DBA, and may never drop or
 * truncate; customers' e-mail addresses and card numbers are masked. Pure.
 */
import type { Bundle, GroupRule, IssuerSpec } from "@sluice/shared/policy";

export const DEMO_POLICY = "demo-pipeline";
export const DEMO_MASKING = "demo-pii";
export const DEMO_PIPELINE_GROUP = "pipeline";
export const DEMO_APPROVER_GROUP = "dba";

/** The CI identity of the demo: claims shaped like a GitHub Actions OIDC token's. */
export const DEMO_CI = {
  sub: "repo:acme/shop:environment:production",
  claims: {
    repository: "acme/shop",
    repository_owner: "acme",
    ref: "refs/heads/main",
    environment: "production",
    workflow: "deploy",
    job_workflow_ref: "acme/shop/.github/workflows/deploy.yml@refs/heads/main",
    event_name: "push",
  },
} as const;

/** The human who approves: a member of the approver group, never the pipeline itself. */
export const DEMO_APPROVER = { sub: "dba-alice", groups: [DEMO_APPROVER_GROUP] } as const;

/** The claim rule that makes the CI token a member of the pipeline group. */
const PIPELINE_RULE: GroupRule = {
  group: DEMO_PIPELINE_GROUP,
  when: { repository: DEMO_CI.claims.repository, ref: DEMO_CI.claims.ref, environment: DEMO_CI.claims.environment },
};

export function demoBundle(base: Bundle, resource: string, devIssuerName: string): Bundle {
  const groups = new Set([...(base.groups ?? []), DEMO_PIPELINE_GROUP, DEMO_APPROVER_GROUP]);
  const issuers: IssuerSpec[] = base.issuers.map((i) =>
    i.name === devIssuerName && !i.groups.some((g) => "group" in g && g.group === DEMO_PIPELINE_GROUP) ? { ...i, groups: [...i.groups, PIPELINE_RULE] } : i,
  );
  return {
    ...base,
    issuers,
    groups: [...groups],
    policies: [
      ...base.policies.filter((p) => p.name !== DEMO_POLICY),
      {
        name: DEMO_POLICY,
        groups: [DEMO_PIPELINE_GROUP],
        resources: [resource],
        allow: ["read", "write", "ddl"],
        requireApproval: ["ddl"],
        deny: ["drop", "truncate", "delete-without-where", "update-without-where"],
        approval: { approvers: [DEMO_APPROVER_GROUP], timeout: "10m" },
      },
    ],
    masking: [
      ...base.masking.filter((m) => m.name !== DEMO_MASKING),
      { name: DEMO_MASKING, resources: [resource], columns: ["customers.email", "customers.card_number"], classifiers: ["credit-card"], strategy: "partial" },
    ],
  };
}
