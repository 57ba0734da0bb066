/**
 * The policy bundle aggregate (subject `sluice.control.policy.bundle`): one document, versioned by
 * revision. One command, ApplyBundle, appends at most one event, BundleApplied, which carries the
 * whole bundle and the per-item changes decided by the issuer and resource deciders. Keeping the bundle
 * as the single consistency boundary is what makes "one command appends one event" hold on
 * nats-server 2.9 (no atomic batch publish): data planes only ever see complete bundles.
 *
 * Pure: no clock, no I/O. Time, actor and command id come in with the command.
 */
import { createHash } from "node:crypto";
import { SluiceError } from "@sluice/shared/errors";
import { canonicalJson } from "@sluice/shared/events";
import { validateBundle, type Bundle } from "@sluice/shared/policy";
import type { CommandMeta, ItemChange, Actor } from "../command-meta.js";
import { rejected, type DomainProblem } from "../domain-problem.js";
import { decideIssuers, evolveIssuers, initialIssuerState, type IssuerEvent, type IssuerState } from "../issuer/issuer-decider.js";
import {
  decideResources,
  evolveResources,
  initialResourceState,
  type ResourceEvent,
  type ResourceState,
} from "../resource/resource-decider.js";

export const POLICY_AGGREGATE = "policy";
/** The one bundle per deployment (tenants are separated by the NATS prefix). */
export const POLICY_BUNDLE_ID = "bundle";

export type PolicyCommand = {
  type: "ApplyBundle";
  bundle: Bundle;
  /** 0: on top of whatever is current; N: only if the current revision is N */
  expectedRevision: number;
  sourcePath: string;
  meta: CommandMeta;
};

export type BundleApplied = {
  type: "BundleApplied";
  revision: number;
  /** sha-256 of the canonical JSON of the bundle */
  hash: string;
  bundle: Bundle;
  actor: Actor;
  appliedAt: string;
  sourcePath: string;
  commandId: string;
  changes: ItemChange[];
};

export type PolicyEvent = BundleApplied;

export interface PolicyState {
  revision: number;
  hash: string;
  bundle: Bundle | null;
  last: BundleApplied | null;
  issuers: IssuerState;
  resources: ResourceState;
  /** command ids already applied: a re-sent command decides nothing */
  commandIds: ReadonlySet<string>;
}

export const initialPolicyState = (): PolicyState => ({
  revision: 0,
  hash: "",
  bundle: null,
  last: null,
  issuers: initialIssuerState(),
  resources: initialResourceState(),
  commandIds: new Set(),
});

export function bundleHash(bundle: Bundle): string {
  return createHash("sha256").update(canonicalJson(bundle)).digest("hex");
}

export function staleRevisionMessage(expected: number, current: number): string {
  return `policy changed since revision ${expected} (now ${current}); re-run with the current revision`;
}

/**
 * The bundle's rule set is the shared one (`validateBundle`, the same rules `sluice policy apply` runs
 * locally and data planes rely on), so client and server can never disagree about what is valid.
 */
export function validatePolicyRules(bundle: Bundle): DomainProblem[] {
  return validateBundle(bundle).map((p) => ({ pointer: p.pointer, message: p.message }));
}

function namedChanges<T>(kind: ItemChange["kind"], before: readonly T[], after: readonly T[], name: (t: T, i: number) => string): ItemChange[] {
  const b = new Map(before.map((t, i) => [name(t, i), canonicalJson(t)]));
  const a = new Map(after.map((t, i) => [name(t, i), canonicalJson(t)]));
  const out: ItemChange[] = [];
  for (const [n, v] of a) {
    const prev = b.get(n);
    if (prev === undefined) out.push({ kind, name: n, op: "added" });
    else if (prev !== v) out.push({ kind, name: n, op: "changed" });
  }
  for (const n of b.keys()) if (!a.has(n)) out.push({ kind, name: n, op: "removed" });
  return out;
}

/** Item changes between any two bundles (for diffs between arbitrary revisions). */
export function bundleChanges(before: Bundle | null, after: Bundle | null): ItemChange[] {
  return [
    ...namedChanges("issuer", before?.issuers ?? [], after?.issuers ?? [], (s) => s.name),
    ...namedChanges("resource", before?.resources ?? [], after?.resources ?? [], (r) => r.name),
    ...namedChanges("policy", before?.policies ?? [], after?.policies ?? [], (p) => p.name),
    ...namedChanges("masking", before?.masking ?? [], after?.masking ?? [], (m, i) => m.name ?? `#${i}`),
    ...webhookChanges(before, after),
  ];
}

/** Who is told about approvals is part of the change record too (CC8.1): webhooks by name, and the global list. */
function webhookChanges(before: Bundle | null, after: Bundle | null): ItemChange[] {
  const out = namedChanges("webhook", before?.notifications?.webhooks ?? [], after?.notifications?.webhooks ?? [], (w) => w.name);
  const was = canonicalJson(before?.notifications?.approvals ?? []);
  const now = canonicalJson(after?.notifications?.approvals ?? []);
  if (was !== now) out.push({ kind: "webhook", name: "notifications.approvals", op: "changed" });
  return out;
}

function issuerChange(e: IssuerEvent): ItemChange {
  switch (e.type) {
    case "IssuerTrusted": return { kind: "issuer", name: e.name, op: "added" };
    case "IssuerChanged": return { kind: "issuer", name: e.name, op: "changed" };
    case "IssuerDistrusted": return { kind: "issuer", name: e.name, op: "removed" };
    default: { const never: never = e; throw new Error(`unhandled ${JSON.stringify(never)}`); }
  }
}

function resourceChange(e: ResourceEvent): ItemChange {
  switch (e.type) {
    case "ResourceRegistered": return { kind: "resource", name: e.name, op: "added" };
    case "ResourceChanged": return { kind: "resource", name: e.name, op: "changed" };
    case "ResourceRetired": return { kind: "resource", name: e.name, op: "removed" };
    default: { const never: never = e; throw new Error(`unhandled ${JSON.stringify(never)}`); }
  }
}

export function decidePolicy(cmd: PolicyCommand, state: PolicyState): PolicyEvent[] {
  switch (cmd.type) {
    case "ApplyBundle": {
      // a re-sent command (same id) appends nothing, whatever happened since
      if (state.commandIds.has(cmd.meta.commandId)) return [];
      if (cmd.expectedRevision > 0 && cmd.expectedRevision !== state.revision) {
        throw new SluiceError("aborted", staleRevisionMessage(cmd.expectedRevision, state.revision), {
          expectedRevision: cmd.expectedRevision,
          currentRevision: state.revision,
        });
      }
      const problems: DomainProblem[] = validatePolicyRules(cmd.bundle);
      let issuerEvents: IssuerEvent[] = [];
      let resourceEvents: ResourceEvent[] = [];
      try {
        issuerEvents = decideIssuers({ type: "ReconcileIssuers", issuers: cmd.bundle.issuers }, state.issuers);
      } catch (e) {
        problems.push(...problemsOf(e));
      }
      try {
        resourceEvents = decideResources({ type: "ReconcileResources", resources: cmd.bundle.resources }, state.resources);
      } catch (e) {
        problems.push(...problemsOf(e));
      }
      if (problems.length) throw rejected(dedupe(problems));

      const hash = bundleHash(cmd.bundle);
      if (hash === state.hash) return []; // same document: nothing to record
      const before = state.bundle;
      const changes: ItemChange[] = [
        ...issuerEvents.map(issuerChange),
        ...resourceEvents.map(resourceChange),
        ...namedChanges("policy", before?.policies ?? [], cmd.bundle.policies, (p) => p.name),
        ...namedChanges("masking", before?.masking ?? [], cmd.bundle.masking, (m, i) => m.name ?? `#${i}`),
        ...webhookChanges(before, cmd.bundle),
      ];
      return [
        {
          type: "BundleApplied",
          revision: state.revision + 1,
          hash,
          bundle: cmd.bundle,
          actor: cmd.meta.actor,
          appliedAt: cmd.meta.now.toISOString(),
          sourcePath: cmd.sourcePath,
          commandId: cmd.meta.commandId,
          changes,
        },
      ];
    }
    default: {
      const never: never = cmd.type;
      throw new Error(`unhandled policy command ${String(never)}`);
    }
  }
}

/** The shared rules and an item decider may flag the same spot: report each pointer once. */
function dedupe(problems: DomainProblem[]): DomainProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => !seen.has(p.pointer) && (seen.add(p.pointer), true));
}

function problemsOf(e: unknown): DomainProblem[] {
  if (e instanceof SluiceError && e.code === "invalid_argument") {
    const d = e.details as { problems?: DomainProblem[] } | undefined;
    if (d?.problems) return d.problems;
  }
  throw e;
}

export function evolvePolicy(state: PolicyState, ev: PolicyEvent): PolicyState {
  switch (ev.type) {
    case "BundleApplied": {
      // re-derive item state from the recorded bundle (the source of truth), not from `changes`
      let issuers = initialIssuerState();
      for (const spec of ev.bundle.issuers) issuers = evolveIssuers(issuers, { type: "IssuerTrusted", name: spec.name, spec });
      let resources = initialResourceState();
      for (const spec of ev.bundle.resources) resources = evolveResources(resources, { type: "ResourceRegistered", name: spec.name, spec });
      const commandIds = new Set(state.commandIds);
      commandIds.add(ev.commandId);
      return { revision: ev.revision, hash: ev.hash, bundle: ev.bundle, last: ev, issuers, resources, commandIds };
    }
    default: {
      const never: never = ev.type;
      throw new Error(`unhandled policy event ${String(never)}`);
    }
  }
}

export function foldPolicy(events: readonly PolicyEvent[]): PolicyState {
  return events.reduce(evolvePolicy, initialPolicyState());
}
