import test from "node:test";
import type { ResourceSpec } from "@sluice/shared/policy";
import { specFor } from "../testing/given-when-then.js";
import { decideResources, evolveResources, initialResourceState, type ResourceCommand } from "./resource-decider.js";

const spec = specFor({ decide: decideResources, evolve: evolveResources, initial: initialResourceState });
const orders: ResourceSpec = { name: "orders", upstream: { host: "db", port: 5432, database: "orders", user: "svc", password: "env:PW" } };
const billing: ResourceSpec = { name: "billing", upstream: { host: "db", port: 5432, database: "billing", user: "svc", password: "file:/run/secrets/pw" } };
const reconcile = (...resources: ResourceSpec[]): ResourceCommand => ({ type: "ReconcileResources", resources });

test("a new resource is registered", () => {
  spec.given([]).when(reconcile(orders)).then([{ type: "ResourceRegistered", name: "orders", spec: orders }]);
});

test("a changed upstream is recorded as changed, an absent one as retired", () => {
  const moved = { ...orders, upstream: { ...orders.upstream, host: "db2" } };
  spec.given([{ type: "ResourceRegistered", name: "orders", spec: orders }, { type: "ResourceRegistered", name: "billing", spec: billing }])
    .when(reconcile(moved))
    .then([{ type: "ResourceChanged", name: "orders", spec: moved }, { type: "ResourceRetired", name: "billing" }]);
});

test("an unchanged list decides nothing", () => {
  spec.given([{ type: "ResourceRegistered", name: "orders", spec: orders }]).when(reconcile(orders)).then([]);
});

test("a duplicate name is rejected", () => {
  spec.given([]).when(reconcile(orders, orders)).thenThrows("invalid_argument", /duplicate resource "orders"/);
});

test("a credential value instead of a reference is rejected", () => {
  const bad = { ...orders, upstream: { ...orders.upstream, password: "s3cret" } };
  spec.given([]).when(reconcile(bad)).thenThrows("invalid_argument", /^\/resources\/0\/upstream\/password: password must be a credential reference/);
});
