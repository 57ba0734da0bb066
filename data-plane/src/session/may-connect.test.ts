import { test } from "node:test";
import assert from "node:assert/strict";
import { canConnect, type Bundle } from "@sluice/shared/policy";
import { mayConnect } from "./may-connect.js";

const bundle: Bundle = {
  issuers: [],
  resources: [],
  masking: [],
  policies: [
    { name: "ci-read", groups: ["ci"], resources: ["orders"], allow: ["read"] },
    { name: "deployers", groups: ["deployers"], resources: ["orders"], issuers: ["github"], allow: ["read", "write", "ddl"] },
    { name: "everyone", groups: ["*"], resources: ["catalog"], allow: ["read"] },
    { name: "dev-any", groups: ["*"], resources: ["*"], issuers: ["dev"], allow: ["read"] },
  ],
};

test("mayConnect honours groups and the wildcard group", () => {
  assert.equal(mayConnect(bundle, "orders", ["ci"], "github"), true);
  assert.equal(mayConnect(bundle, "orders", ["nobody"], "github"), false);
  // `groups: ["*"]` lets any identity connect, as evaluate lets it run statements
  assert.equal(mayConnect(bundle, "catalog", [], "github"), true);
  assert.equal(mayConnect(bundle, "billing", ["ci"], "github"), false);
});

test("mayConnect honours issuer scoping and fails closed without an issuer", () => {
  assert.equal(mayConnect(bundle, "orders", ["deployers"], "github"), true);
  assert.equal(mayConnect(bundle, "billing", ["deployers"], "dev"), true); // through dev-any
  assert.equal(mayConnect(bundle, "billing", ["deployers"], "gitlab"), false);
  assert.equal(mayConnect(bundle, "orders", ["deployers"]), false);
  assert.equal(mayConnect(bundle, "orders", ["ci"]), true);
});

test("mayConnect agrees with canConnect on every combination", () => {
  for (const resource of ["orders", "catalog", "billing"])
    for (const groups of [[], ["ci"], ["deployers"], ["ci", "deployers"], ["nobody"]])
      for (const issuer of [undefined, "github", "dev", "gitlab"])
        assert.equal(mayConnect(bundle, resource, groups, issuer), canConnect(bundle, { resource, groups, issuer }), `${resource} ${groups} ${issuer}`);
});
