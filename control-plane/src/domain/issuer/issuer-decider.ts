/**
 * Trusted token issuers as a decider over the bundle's issuer list. Same reasoning as the resource
 * decider: the bundle is the consistency boundary (one command → one event on nats-server 2.9, which
 * has no atomic batch publish); this decider validates each issuer's registration and decides the
 * per-item facts recorded in BundleApplied.changes.
 */
import type { IssuerSpec } from "@sluice/shared/policy";
import { canonicalJson } from "@sluice/shared/events";
import type { DomainProblem } from "../domain-problem.js";
import { rejected } from "../domain-problem.js";

export type IssuerCommand = { type: "ReconcileIssuers"; issuers: IssuerSpec[] };

export type IssuerEvent =
  | { type: "IssuerTrusted"; name: string; spec: IssuerSpec }
  | { type: "IssuerChanged"; name: string; spec: IssuerSpec }
  | { type: "IssuerDistrusted"; name: string };

export interface IssuerState {
  issuers: ReadonlyMap<string, IssuerSpec>;
}

export const initialIssuerState = (): IssuerState => ({ issuers: new Map() });

const FORBIDDEN_ALG = /^(none|HS\d+)$/i;

/**
 * Registration invariants of the trusted issuers (the full field rules are the shared validateBundle):
 * unique names, keys to verify with, and never `none` or a symmetric algorithm.
 */
export function validateIssuers(issuers: readonly IssuerSpec[]): DomainProblem[] {
  const problems: DomainProblem[] = [];
  const names = new Set<string>();
  issuers.forEach((s, i) => {
    const at = `/issuers/${i}`;
    if (!s.name) problems.push({ pointer: `${at}/name`, message: "issuer name is required" });
    else if (names.has(s.name)) problems.push({ pointer: `${at}/name`, message: `duplicate issuer "${s.name}"` });
    names.add(s.name);
    if (!s.jwksUrl && !s.jwks && !s.discovery) problems.push({ pointer: at, message: "issuer needs jwksUrl, an inline jwks or discovery: true" });
    s.algorithms?.forEach((a, k) => {
      if (FORBIDDEN_ALG.test(a)) problems.push({ pointer: `${at}/algorithms/${k}`, message: `algorithm ${a} is not allowed (no none, no HMAC)` });
    });
  });
  return problems;
}

export function decideIssuers(cmd: IssuerCommand, state: IssuerState): IssuerEvent[] {
  switch (cmd.type) {
    case "ReconcileIssuers": {
      const problems = validateIssuers(cmd.issuers);
      if (problems.length) throw rejected(problems);
      const out: IssuerEvent[] = [];
      const next = new Map(cmd.issuers.map((s) => [s.name, s]));
      for (const [name, spec] of next) {
        const prev = state.issuers.get(name);
        if (!prev) out.push({ type: "IssuerTrusted", name, spec });
        else if (canonicalJson(prev) !== canonicalJson(spec)) out.push({ type: "IssuerChanged", name, spec });
      }
      for (const name of state.issuers.keys()) if (!next.has(name)) out.push({ type: "IssuerDistrusted", name });
      return out;
    }
    default: {
      const never: never = cmd.type;
      throw new Error(`unhandled issuer command ${String(never)}`);
    }
  }
}

export function evolveIssuers(state: IssuerState, ev: IssuerEvent): IssuerState {
  const m = new Map(state.issuers);
  switch (ev.type) {
    case "IssuerTrusted":
    case "IssuerChanged":
      m.set(ev.name, ev.spec);
      return { issuers: m };
    case "IssuerDistrusted":
      m.delete(ev.name);
      return { issuers: m };
    default: {
      const never: never = ev;
      throw new Error(`unhandled issuer event ${JSON.stringify(never)}`);
    }
  }
}
