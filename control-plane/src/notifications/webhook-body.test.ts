import { test } from "node:test";
import assert from "node:assert/strict";
import { approvalNotice, webhooksFor } from "./approval-notice.js";
import { jsonBody, slackBody } from "./webhook-body.js";
import { granted, requested } from "./testing.js";
import type { Bundle } from "@sluice/shared/policy";

const meta = { eventId: "018f0000-0000-7000-8000-0000000000ee", time: "2026-12-01T10:00:00.001Z" };

test("the JSON body of a request: the statement, who asked, the rule, the expiry and the commands", () => {
  const b = jsonBody(approvalNotice(requested(), requested(), meta)) as any;
  assert.equal(b.type, "approval.requested");
  assert.equal(b.id, meta.eventId);
  assert.equal(b.approval.id, "apr-0123456789");
  assert.equal(b.approval.status, "pending");
  assert.equal(b.approval.statement, "ALTER TABLE orders ADD COLUMN shipped_at timestamptz");
  assert.deepEqual(b.approval.requester, { subject: "repo:acme/shop:ref:refs/heads/main", issuer: "github", groups: ["deployers"] });
  assert.equal(b.approval.rule, "deployers/requireApproval:ddl");
  assert.equal(b.approval.expiresAt, "2026-12-01T10:10:00.000Z");
  assert.equal(b.commands.approve, "sluice approvals approve apr-0123456789");
  assert.equal(b.approval.decidedBy, undefined);
  assert.equal("approvalId" in b.approval, false);
});

test("the JSON body of a decision names who decided and why", () => {
  const b = jsonBody(approvalNotice(requested(), granted(), { ...meta, eventId: "e2" })) as any;
  assert.equal(b.type, "approval.decided");
  assert.equal(b.approval.status, "approved");
  assert.deepEqual(b.approval.decidedBy, { subject: "alice", issuer: "okta" });
  assert.equal(b.approval.reason, "additive, reviewed");
  const expired = jsonBody(approvalNotice(requested(), { type: "ApprovalExpired", approvalId: "apr-0123456789", commandId: "c", at: "2026-12-01T10:10:00.050Z" }, meta)) as any;
  assert.equal(expired.approval.status, "expired");
  assert.equal(expired.approval.decidedBy, undefined);
});

test("the Slack body carries the statement, requester, rule, expiry and approve command, with Slack markup escaped", () => {
  const n = approvalNotice(requested({ sql: "SELECT '<!channel>' & 1; ```x```" }), requested(), meta);
  const b = slackBody(n) as { text: string; blocks: Array<Record<string, any>> };
  const all = JSON.stringify(b);
  assert.match(b.text, /Approval needed: ddl on orders \(apr-0123456789\)/);
  assert.match(b.text, /Approve with: sluice approvals approve apr-0123456789/);
  assert.ok(all.includes("SELECT '&lt;!channel&gt;' &amp; 1; '''x'''"), "quoted SQL cannot ping a channel or close the code block");
  assert.ok(!all.includes("<!channel>"));
  assert.equal(b.blocks[0]!.type, "header");
  const fields = b.blocks[2]!.fields.map((f: { text: string }) => f.text);
  assert.ok(fields.includes("*Requester*\ngithub:repo:acme/shop:ref:refs/heads/main"));
  assert.ok(fields.includes("*Rule*\ndeployers/requireApproval:ddl"));
  assert.ok(fields.includes("*Expires*\n2026-12-01T10:10:00.000Z"));
  assert.ok(fields.length <= 10, "Slack allows at most 10 fields");
  assert.match(b.blocks[3]!.text.text, /`sluice approvals approve apr-0123456789`/);
  const long = slackBody(approvalNotice(requested({ sql: "x".repeat(10_000) }), requested(), meta)) as any;
  assert.ok(long.blocks[1].text.text.length <= 3000, "within Slack's section limit");
});

test("which webhooks: the global list and the policy's own, each once, filtered by `on`", () => {
  const bundle = {
    issuers: [], resources: [], masking: [],
    policies: [{ name: "deployers", groups: ["ci"], resources: ["orders"], allow: ["ddl"], approval: { approvers: ["dba"], timeout: "10m", notify: ["slack", "sink"] } }],
    notifications: {
      approvals: ["sink"],
      webhooks: [
        { name: "slack", url: "env:U", secret: "env:S", format: "slack", on: ["requested"] },
        { name: "sink", url: "https://x.example", secret: "env:S" },
        { name: "unused", url: "https://y.example", secret: "env:S" },
      ],
    },
  } as unknown as Bundle;
  assert.deepEqual(webhooksFor(bundle, "deployers", "requested").map((w) => w.name), ["slack", "sink"]);
  assert.deepEqual(webhooksFor(bundle, "deployers", "decided").map((w) => w.name), ["sink"]);
  assert.deepEqual(webhooksFor(bundle, "other", "requested").map((w) => w.name), ["sink"]);
  assert.deepEqual(webhooksFor({ ...bundle, notifications: undefined }, "deployers", "requested"), []);
  assert.deepEqual(webhooksFor(undefined, "deployers", "requested"), []);
});
