/**
 * The console's HTTP edge: security headers on every answer, JSON bodies in and out, and the one
 * place refusals (SluiceError or a refused in-process gRPC call) become HTTP statuses.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { SluiceError, type ErrorCode } from "@sluice/shared/errors";
import { scrubSecrets } from "@sluice/shared/logging";
import { CallRefused } from "./in-process-calls.js";

/**
 * Scripts, styles, fonts and images only from the console itself, fetches only to it, no framing, no
 * plugins, no inline code; forms post only back here.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

export function securityHeaders(csp = CONTENT_SECURITY_POLICY): Record<string, string> {
  return {
    "content-security-policy": csp,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
  };
}

const STATUS: Record<ErrorCode, number> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 409,
  aborted: 409,
  unavailable: 503,
  resource_exhausted: 429,
  deadline_exceeded: 504,
  internal: 500,
};

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...securityHeaders(), "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers });
  res.end(text);
}

/** A refusal as `{ error: { code, message } }` with the matching status; internal errors say nothing more. */
export function sendError(res: ServerResponse, err: unknown): { status: number; code: ErrorCode } {
  const code = err instanceof CallRefused ? err.code : SluiceError.from(err).code;
  const status = STATUS[code] ?? 500;
  const raw = err instanceof Error ? err.message : String(err);
  const message = code === "internal" ? "internal error" : scrubSecrets((raw.split("\n")[0] ?? "").slice(0, 500));
  if (!res.headersSent) sendJson(res, status, { error: { code, message } });
  else res.end();
  return { status, code };
}

const MAX_BODY = 64 * 1024;

/** Reads a JSON object body (at most 64 KiB, content-type application/json). */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json(;|$)/i.test(req.headers["content-type"] ?? "")) throw new SluiceError("invalid_argument", "send the body as application/json");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new SluiceError("invalid_argument", "request body too large");
    chunks.push(c);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
  } catch {
    throw new SluiceError("invalid_argument", "the body is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new SluiceError("invalid_argument", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A minimal page for sign-in outcomes (no script, styles from the console's own sheet when built). */
export function sendPage(res: ServerResponse, status: number, title: string, bodyHtml: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)} · sluice</title></head>` +
    `<body><main><h1>${escapeHtml(title)}</h1>${bodyHtml}</main></body></html>`;
  res.writeHead(status, { ...securityHeaders(), "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(html);
}
