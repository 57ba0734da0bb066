import test from "node:test";
import type { IssuerSpec } from "@sluice/shared/policy";
import { specFor } from "../testing/given-when-then.js";
import { decideIssuers, evolveIssuers, initialIssuerState, type IssuerCommand } from "./issuer-decider.js";

const spec = specFor({ decide: decideIssuers, evolve: evolveIssuers, initial: initialIssuerState });
const gh: IssuerSpec = {
  name: "github",
  issuer: "https://token.actions.githubusercontent.com",
  audience: "sluice",
  jwksUrl: "https://token.actions.githubusercontent.com/.well-known/jwks",
  groups: [{ group: "ci", when: { repository_owner: "acme" } }],
};
const dev: IssuerSpec = { name: "dev", issuer: "http://127.0.0.1:7481/dev", audience: "sluice", jwks: { keys: [] }, groups: [{ claim: "groups" }] };
const reconcile = (...issuers: IssuerSpec[]): IssuerCommand => ({ type: "ReconcileIssuers", issuers });

test("a new issuer is trusted", () => {
  spec.given([]).when(reconcile(gh, dev)).then([
    { type: "IssuerTrusted", name: "github", spec: gh },
    { type: "IssuerTrusted", name: "dev", spec: dev },
  ]);
});

test("a changed audience is recorded, a missing issuer is distrusted", () => {
  const gh2 = { ...gh, audience: "other" };
  spec.given([{ type: "IssuerTrusted", name: "github", spec: gh }, { type: "IssuerTrusted", name: "dev", spec: dev }])
    .when(reconcile(gh2))
    .then([{ type: "IssuerChanged", name: "github", spec: gh2 }, { type: "IssuerDistrusted", name: "dev" }]);
});

test("an issuer without keys, or with HMAC/none, is rejected", () => {
  const { jwksUrl: _u, ...noKeys } = gh;
  spec.given([]).when(reconcile(noKeys as IssuerSpec)).thenThrows("invalid_argument", /jwksUrl, an inline jwks or discovery: true/);
  // a normalized issuer given by URL alone says discovery: true
  const byDiscovery = { ...(noKeys as IssuerSpec), discovery: true };
  spec.given([]).when(reconcile(byDiscovery)).then([{ type: "IssuerTrusted", name: "github", spec: byDiscovery }]);
  spec.given([]).when(reconcile({ ...gh, algorithms: ["HS256"] })).thenThrows("invalid_argument", /HS256 is not allowed/);
  spec.given([]).when(reconcile({ ...gh, algorithms: ["RS256", "none"] })).thenThrows("invalid_argument", /^\/issuers\/0\/algorithms\/1: algorithm none is not allowed/);
});

test("duplicate names are rejected", () => {
  spec.given([]).when(reconcile(gh, { ...dev, name: "github" })).thenThrows("invalid_argument", /duplicate issuer "github"/);
});
