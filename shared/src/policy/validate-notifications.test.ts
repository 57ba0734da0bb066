import { test } from "node:test";
import assert from "node:assert/strict";
import { validateBundle } from "./validate-bundle.js";
import type { Bundle } from "./bundle.js";

/** A valid bundle with one global webhook and one a policy names. */
function base(): Bundle {
  return {
    issuers: [],
    groups: ["ci", "dba"],
    resources: [{ name: "orders", upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "svc", password: "env:ORDERS_PW" } }],
    policies: [
      {
        name: "deployers",
        groups: ["ci"],
        resources: ["orders"],
        allow: ["read", "ddl"],
        requireApproval: ["ddl"],
        approval: { approvers: ["dba"], timeout: "10m", notify: ["slack"] },
      },
    ],
    masking: [],
    notifications: {
      approvals: ["sink"],
      webhooks: [
        { name: "slack", url: "env:SLACK_URL", format: "slack", secret: "env:SLACK_SECRET", on: ["requested"] },
        { name: "sink", url: "https://hooks.example.com/sluice", secret: "file:/etc/sluice/hook-secret" },
      ],
    },
  };
}

function problemsOf(mutate: (b: any) => void): string[] {
  const b = base() as any;
  mutate(b);
  return validateBundle(b).map((p) => `${p.pointer}: ${p.message}`);
}

test("webhooks configured globally and per policy validate; loopback http is fine for development", () => {
  assert.deepEqual(problemsOf(() => {}), []);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[1].url = "http://127.0.0.1:9999/hook")), []);
  assert.deepEqual(problemsOf((b) => delete b.notifications), ["/policies/0/approval/notify/0: unknown webhook \"slack\" in policies[0].approval.notify (no entry in notifications.webhooks has that name)"]);
});

test("a signing secret or URL given as a literal is refused without echoing it", () => {
  const literal = "s3cr3t-value-never-echoed";
  const lines = problemsOf((b) => (b.notifications.webhooks[0].secret = literal));
  assert.deepEqual(lines, [
    "/notifications/webhooks/0/secret: notifications.webhooks[0].secret looks like a literal signing secret: use a reference (env:NAME or file:/absolute/path) so the secret stays out of the bundle and its events",
  ]);
  assert.ok(!lines.join().includes(literal));
  assert.deepEqual(problemsOf((b) => delete b.notifications.webhooks[1].secret), [
    "/notifications/webhooks/1: notifications.webhooks[1] is missing \"secret\": a reference to the signing secret (env:NAME or file:/absolute/path)",
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[0].url = "env:")), [
    "/notifications/webhooks/0/url: malformed reference in notifications.webhooks[0].url: env: needs a variable name (letters, digits, _)",
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[1].secret = 42)), [
    "/notifications/webhooks/1/secret: notifications.webhooks[1].secret must be a reference to the signing secret (env:NAME or file:/absolute/path), got a number",
  ]);
});

test("a webhook URL must be https (plain http only on loopback): approvals carry SQL text", () => {
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[1].url = "http://hooks.example.com/x")), [
    "/notifications/webhooks/1/url: notifications.webhooks[1].url must be an https URL (plain http only on loopback)",
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[1].url = "ftp://x")), [
    "/notifications/webhooks/1/url: notifications.webhooks[1].url must be an https URL (plain http only on loopback)",
  ]);
});

test("names, formats, events and references are checked", () => {
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[1].name = "slack")), [
    '/notifications/webhooks/1/name: duplicate webhook name "slack" (also notifications.webhooks[0])',
    '/notifications/approvals/0: unknown webhook "sink" in notifications.approvals (no entry in notifications.webhooks has that name)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[0].format = "teams")), [
    '/notifications/webhooks/0/format: unknown webhook format "teams" in notifications.webhooks[0].format (expected one of json, slack)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[0].on = ["approved"])), [
    '/notifications/webhooks/0/on/0: unknown webhook event "approved" in notifications.webhooks[0].on (expected one of requested, decided)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks[0].retries = 3)), [
    '/notifications/webhooks/0/retries: unknown key "retries" in notifications.webhooks[0] (expected one of name, url, format, secret, on)',
  ]);
  assert.deepEqual(problemsOf((b) => (b.notifications.approval = [])), [
    '/notifications/approval: unknown key "approval" in notifications (did you mean "approvals"? expected one of webhooks, approvals)',
  ]);
  // a broken webhook list does not cascade into "unknown webhook" at every reference
  assert.deepEqual(problemsOf((b) => (b.notifications.webhooks = "slack")), ["/notifications/webhooks: notifications.webhooks must be a list, got a string"]);
});
