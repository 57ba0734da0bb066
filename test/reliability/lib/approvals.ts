/**
 * Held statements in the scenarios: the policy that holds a `deployers` DDL for group `dba`, and the
 * approval notice a held client gets.
 */
import type pg from "pg";
import type { PolicySpec } from "@sluice/shared/policy";

export const APPROVAL_POLICY: PolicySpec = {
  name: "deployers",
  groups: ["deployers"],
  resources: ["app"],
  allow: ["read", "write", "ddl"],
  requireApproval: ["ddl"],
  approval: { approvers: ["dba"], timeout: "10m" },
};

/** resolves with the approval id of the next approval notice the client gets */
export function approvalNotice(c: pg.Client, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no approval notice")), ms);
    const on = (n: { message?: string }) => {
      const m = /request (apr-[0-9a-z]+)/.exec(n.message ?? "");
      if (m) {
        clearTimeout(t);
        c.off("notice", on);
        resolve(m[1]!);
      }
    };
    c.on("notice", on);
  });
}
