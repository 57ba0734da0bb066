/**
 * Everything under /console/: the built web application (web/dist, public: it holds no data), the
 * sign-in routes, and the JSON API with its two live feeds (server-sent events). Every answer carries
 * the console's security headers; every API call needs a session; every POST passes the CSRF check.
 */
import { readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "@sluice/shared/logging";
import { actorOf, CONSOLE_PREFIX, type ConsoleAuth } from "./console-auth.js";
import { routeApi, type ConsoleApi } from "./console-api.js";
import { securityHeaders, sendError, sendJson, sendPage } from "./http-kit.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

/** File names a build may produce at the top of dist/ or in dist/assets/: no separators, no dot files. */
const ASSET = /^(assets\/)?[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export interface ConsoleHttpOptions {
  auth: ConsoleAuth;
  api: ConsoleApi;
  /** the directory `npm run build -w web` writes */
  assetsDir: string;
  /** subscribe to "some approval changed"; returns the unsubscribe */
  onApprovalChange: (listener: () => void) => () => void;
  logger: Logger;
  /** server-sent events keep-alive period (default 15 s) */
  keepAliveMs?: number;
}

/** Server-sent events: one `event:` line and a JSON `data:` line per message, comments as keep-alive. */
function openEventStream(req: IncomingMessage, res: ServerResponse, keepAliveMs: number): { send: (event: string, data: unknown) => void; closed: AbortSignal } {
  res.writeHead(200, { ...securityHeaders(), "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
  res.write(": sluice console\n\n");
  const ac = new AbortController();
  const timer = setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs);
  timer.unref();
  const close = () => {
    clearInterval(timer);
    ac.abort();
  };
  req.on("close", close);
  res.on("close", close);
  return { send: (event, data) => void (ac.signal.aborted || res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)), closed: ac.signal };
}

export function consoleHttpHandler(o: ConsoleHttpOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const keepAliveMs = o.keepAliveMs ?? 15_000;
  const cache = new Map<string, { body: Buffer; mtimeMs: number }>();
  const file = (name: string): Buffer | undefined => {
    const p = join(o.assetsDir, name);
    let st;
    try {
      st = statSync(p);
    } catch {
      return undefined;
    }
    if (!st.isFile()) return undefined;
    const hit = cache.get(p);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.body;
    const body = readFileSync(p);
    cache.set(p, { body, mtimeMs: st.mtimeMs });
    return body;
  };

  const serveAsset = (req: IncomingMessage, res: ServerResponse, name: string): void => {
    const body = ASSET.test(name) ? file(name) : undefined;
    if (!body) {
      if (name === "index.html") {
        return sendPage(res, 503, "Console not built", "<p>The console's web assets are missing: run <code>npm run build -w web</code> (npm test and the demo script do it on a fresh clone).</p>");
      }
      res.writeHead(404, { ...securityHeaders(), "content-type": "text/plain", "cache-control": "no-store" });
      return void res.end("not found\n");
    }
    // hashed build output never changes under its name; the page itself is always revalidated
    const immutable = name.startsWith("assets/");
    res.writeHead(200, {
      ...securityHeaders(),
      "content-type": TYPES[extname(name)] ?? "application/octet-stream",
      "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
      "content-length": String(body.length),
    });
    res.end(req.method === "HEAD" ? undefined : body);
  };

  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://console.invalid");
    const rest = url.pathname.slice(CONSOLE_PREFIX.length);
    try {
      if (rest === "auth/login" && req.method === "GET") return await o.auth.login(req, res, url);
      if (rest === "auth/callback" && req.method === "GET") return await o.auth.callback(req, res, url);
      if (rest.startsWith("api/") || rest.startsWith("auth/")) {
        const session = o.auth.current(req);
        if (rest === "api/me" && req.method === "GET") {
          if (!session) return sendJson(res, 200, { signedIn: false, issuers: o.auth.issuers() });
          const actor = actorOf(session);
          return sendJson(res, 200, {
            signedIn: true,
            subject: session.sub,
            issuer: session.iss,
            groups: session.groups,
            name: session.name ?? null,
            admin: o.api.isAdmin(actor),
            expiresAt: new Date(session.exp * 1000).toISOString(),
            csrfToken: o.auth.csrfToken(session),
          });
        }
        if (!session) return sendJson(res, 401, { error: { code: "unauthenticated", message: "sign in first" } });
        if (req.method !== "GET" && req.method !== "HEAD") o.auth.checkCsrf(req, session);
        if (rest === "auth/logout" && req.method === "POST") return o.auth.logout(res);
        const actor = actorOf(session);
        const path = rest.slice("api/".length);
        if (path === "approvals/events" && req.method === "GET") {
          const sse = openEventStream(req, res, keepAliveMs);
          // only "something changed": the page re-reads what it may see through the API
          const off = o.onApprovalChange(() => sse.send("changed", {}));
          sse.closed.addEventListener("abort", off, { once: true });
          return;
        }
        const follow = /^sessions\/([A-Za-z0-9_.:-]{1,128})\/follow$/.exec(path);
        if (follow && req.method === "GET") {
          const id = follow[1]!;
          // refused before the stream opens, so a refusal is an ordinary JSON error
          await o.api.checkSession(actor, id);
          const sse = openEventStream(req, res, keepAliveMs);
          o.api
            .followSession(actor, id, sse.closed, (ev) => sse.send("event", { type: ev.type.replace(/^dev\.sluice\./, "").replace(/\.v\d+$/, "") }))
            .catch((e: unknown) => {
              if (sse.closed.aborted) return;
              o.logger.info({ sessionId: id, err: (e as Error).message }, "console follow ended");
              sse.send("failed", {});
              res.end();
            });
          return;
        }
        if (await routeApi(o.api, req, res, path, url, actor)) return;
        return sendJson(res, 404, { error: { code: "not_found", message: "no such console API" } });
      }
      if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: { code: "invalid_argument", message: "method not allowed" } });
      return serveAsset(req, res, rest === "" ? "index.html" : rest);
    } catch (e) {
      const r = sendError(res, e);
      if (r.status >= 500) o.logger.warn({ path: url.pathname, code: r.code, err: (e as Error).message }, "console request failed");
    }
  };
}
