/**
 * Resources (the databases clients connect to) as a decider over the bundle's resource list.
 *
 * Why not one JetStream subject per resource: nats-server 2.9 has no atomic batch publish, so a bundle
 * touching three resources would append three events one by one, and a crash between them would leave
 * a half-applied bundle that data planes could observe. Instead the policy bundle is the consistency
 * boundary (one command → one BundleApplied event on `sluice.control.policy.bundle`), and this decider
 * validates the registration of each resource and decides the per-item facts (registered, changed,
 * retired) that BundleApplied records in its `changes`. Its state is folded from those same events.
 */
import type { ResourceSpec } from "@sluice/shared/policy";
import { canonicalJson } from "@sluice/shared/events";
import type { DomainProblem } from "../domain-problem.js";
import { rejected } from "../domain-problem.js";

export type ResourceCommand = { type: "ReconcileResources"; resources: ResourceSpec[] };

export type ResourceEvent =
  | { type: "ResourceRegistered"; name: string; spec: ResourceSpec }
  | { type: "ResourceChanged"; name: string; spec: ResourceSpec }
  | { type: "ResourceRetired"; name: string };

export interface ResourceState {
  resources: ReadonlyMap<string, ResourceSpec>;
}

export const initialResourceState = (): ResourceState => ({ resources: new Map() });

/** A credential is stored only as a reference; the data plane resolves it. */
export const CREDENTIAL_REF = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/;

/**
 * Registration invariants of the resource set (the full field rules are the shared validateBundle):
 * names are unique, and a credential is only ever a reference, never the secret itself.
 */
export function validateResources(resources: readonly ResourceSpec[]): DomainProblem[] {
  const problems: DomainProblem[] = [];
  const seen = new Set<string>();
  resources.forEach((r, i) => {
    const at = `/resources/${i}`;
    if (!r.name) problems.push({ pointer: `${at}/name`, message: "resource name is required" });
    else if (seen.has(r.name)) problems.push({ pointer: `${at}/name`, message: `duplicate resource "${r.name}"` });
    seen.add(r.name);
    const pw = r.upstream?.password;
    // never echo the value: it may be a secret typed where a reference belongs
    if (pw !== undefined && !CREDENTIAL_REF.test(pw)) {
      problems.push({ pointer: `${at}/upstream/password`, message: "password must be a credential reference (env:NAME or file:/path), never the value" });
    }
  });
  return problems;
}

export function decideResources(cmd: ResourceCommand, state: ResourceState): ResourceEvent[] {
  switch (cmd.type) {
    case "ReconcileResources": {
      const problems = validateResources(cmd.resources);
      if (problems.length) throw rejected(problems);
      const out: ResourceEvent[] = [];
      const next = new Map(cmd.resources.map((r) => [r.name, r]));
      for (const [name, spec] of next) {
        const prev = state.resources.get(name);
        if (!prev) out.push({ type: "ResourceRegistered", name, spec });
        else if (canonicalJson(prev) !== canonicalJson(spec)) out.push({ type: "ResourceChanged", name, spec });
      }
      for (const name of state.resources.keys()) if (!next.has(name)) out.push({ type: "ResourceRetired", name });
      return out;
    }
    default: {
      const never: never = cmd.type;
      throw new Error(`unhandled resource command ${String(never)}`);
    }
  }
}

export function evolveResources(state: ResourceState, ev: ResourceEvent): ResourceState {
  const m = new Map(state.resources);
  switch (ev.type) {
    case "ResourceRegistered":
    case "ResourceChanged":
      m.set(ev.name, ev.spec);
      return { resources: m };
    case "ResourceRetired":
      m.delete(ev.name);
      return { resources: m };
    default: {
      const never: never = ev;
      throw new Error(`unhandled resource event ${JSON.stringify(never)}`);
    }
  }
}
