/**
 * The policy every fuzz sequence runs under, and its identities: a read-only CI job, and a deployer
 * that may write and COPY but needs an approver for DDL and unbounded deletes/updates; both are denied the
 * table `public.secrets`; email and card columns are masked (and every text column scanned by the
 * classifiers). The `hash` strategy makes masked parameters computable by the oracles (the world
 * gives the data plane its key).
 */
import { parse as parseYaml } from "yaml";
import type { Bundle } from "@sluice/shared/policy";

export const FUZZ_POLICY = `
policies:
  - name: fz-read
    groups: [fz-reader]
    resources: [app]
    allow: [read]
    tables: { deny: [public.secrets] }
  - name: fz-deploy
    groups: [fz-writer]
    resources: [app]
    allow: [read, write, copy]
    requireApproval: [ddl, delete-without-where, update-without-where, truncate]
    deny: [copy-program, superuser-functions, drop-database]
    tables: { deny: [public.secrets] }
    approval: { approvers: [fz-dba], timeout: 30s }
masking:
  - resources: [app]
    columns: [customers.email, customers.card]
    classifiers: [email, credit-card]
    strategy: hash
`;

export type IdentityName = "reader" | "writer";

export const IDENTITIES: Readonly<Record<IdentityName, { sub: string; groups: readonly string[] }>> = {
  reader: { sub: "fz-ci-reader", groups: ["fz-reader"] },
  writer: { sub: "fz-deployer", groups: ["fz-writer"] },
};

/** The bundle part the oracles decide with (the stack adds the dev issuer and the resource). */
export function fuzzBundle(): Bundle {
  const raw = parseYaml(FUZZ_POLICY) as Partial<Bundle>;
  return { issuers: [], resources: [], policies: raw.policies ?? [], masking: raw.masking ?? [] };
}
