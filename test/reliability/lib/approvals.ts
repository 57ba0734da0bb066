/**
 * Held statements in the scenarios: the policy that holds a `deployers` DDL for group `dba`, and the
 * approval notice a held client gets.
 */
import type pg from "pg";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { decodeEvent, type CloudEvent } from "@sluice/shared/events";
import type { PolicySpec } from "@sluice/shared/policy";
import type { ReliabilityStack } from "./reliability-stack.js";

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

/** The events of one approval request on SLUICE_CONTROL (a handful: read in one bounded fetch). */
export async function controlEventsOf(s: Pick<ReliabilityStack, "nc" | "names">, id: string): Promise<CloudEvent[]> {
  const subject = s.names.controlSubject("approval", id);
  const info = await (await jetstreamManager(s.nc)).streams.info(s.names.controlStream, { subjects_filter: subject });
  const total = Number((info.state.subjects as Record<string, number> | undefined)?.[subject] ?? 0);
  const out: CloudEvent[] = [];
  if (total === 0) return out;
  const c = await jetstream(s.nc).consumers.get(s.names.controlStream, { filter_subjects: subject });
  const it = await c.fetch({ max_messages: Math.min(total, 100), expires: 10_000 });
  for await (const m of it) {
    out.push(decodeEvent(m.data));
    if (out.length >= total) break;
  }
  return out;
}
