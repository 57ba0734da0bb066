/**
 * The two bodies a webhook can get (pure): sluice's own JSON, and a Slack-compatible message (a
 * `text` fallback plus Block Kit blocks, accepted by Slack incoming webhooks and by the many chat
 * tools that take the same shape).
 */
import type { WebhookFormat } from "@sluice/shared/policy";
import type { ApprovalNotice } from "./approval-notice.js";

export const JSON_BODY_VERSION = 1;

/** The generic body: `type` is `approval.requested` or `approval.decided`. */
export function jsonBody(n: ApprovalNotice): Record<string, unknown> {
  const { kind, eventId, time, commands, approvalId, ...approval } = n;
  return { version: JSON_BODY_VERSION, type: `approval.${kind}`, id: eventId, time, approval: { id: approvalId, ...approval }, commands };
}

/** Slack treats &, < and > as markup (`<!channel>` would ping a whole channel): escape what we quote. */
function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Slack limits a section's text to 3000 characters; the SQL is cut well before (and inside a code block). */
function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

const who = (a: { subject: string; issuer: string }) => `${a.issuer}:${a.subject}`;

export function slackBody(n: ApprovalNotice): Record<string, unknown> {
  const title =
    n.kind === "requested"
      ? `Approval needed: ${n.statementClass} on ${n.resource} (${n.approvalId})`
      : `Approval ${n.approvalId} ${n.status}${n.decidedBy ? ` by ${who(n.decidedBy)}` : ""}`;
  const fields = [
    `*Requester*\n${esc(who(n.requester))}`,
    `*Rule*\n${esc(n.rule)}`,
    `*Resource*\n${esc(n.resource)}`,
    `*Approvers*\n${esc(n.approvers.join(", "))}`,
    n.kind === "requested" ? `*Expires*\n${n.expiresAt}` : `*Decided*\n${n.decidedAt ?? ""}`,
    `*Session*\n${esc(n.sessionId)} #${n.statementId}`,
  ];
  const blocks: Array<Record<string, unknown>> = [
    { type: "header", text: { type: "plain_text", text: clip(title, 150) } },
    { type: "section", text: { type: "mrkdwn", text: "```" + esc(clip(n.statement.replace(/```/g, "'''"), 2500)) + "```" } },
    { type: "section", fields: fields.map((text) => ({ type: "mrkdwn", text })) },
  ];
  if (n.kind === "requested") {
    blocks.push({ type: "section", text: { type: "mrkdwn", text: `Approve: \`${n.commands.approve}\`\nReject: \`${n.commands.reject}\`` } });
  } else if (n.reason) {
    blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: `Reason: ${esc(clip(n.reason, 1000))}` }] });
  }
  const text =
    n.kind === "requested"
      ? `${title}: ${clip(n.statement.replace(/\s+/g, " "), 200)} — requested by ${who(n.requester)}, rule ${n.rule}, expires ${n.expiresAt}. Approve with: ${n.commands.approve}`
      : title;
  return { text: esc(text), blocks };
}

export function bodyFor(format: WebhookFormat | undefined, n: ApprovalNotice): string {
  return JSON.stringify(format === "slack" ? slackBody(n) : jsonBody(n));
}
