/**
 * The control plane's small HTTP listener: /healthz, /metrics, plus routes a composing process mounts
 * (e.g. `sluice dev` serves its development issuer's /.well-known/jwks.json here) and whole path
 * prefixes a component serves (the console under /console/, the dev issuer under /dev/).
 */
import { listenError } from "@sluice/shared/errors";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parseHostPort } from "@sluice/shared/config";
import { exposition, type Registry } from "@sluice/shared/metrics";

/** Handles one request; return false to fall through (404). */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

/** Routes by exact path (GET/HEAD): `{ "/.well-known/jwks.json": (req, res) => … }`. */
export type HttpRoutes = Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>>;

/** Everything under `prefix` (which ends with "/"); the bare prefix without its slash redirects to it. */
export interface HttpMount {
  prefix: string;
  handle: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
}

export interface RunningHttpServer {
  port: number;
  stop(): Promise<void>;
}

export async function startHttpServer(
  listen: string,
  o: { metrics: Registry; healthy: () => { ok: boolean; detail: Record<string, unknown> }; routes?: HttpRoutes; mounts?: readonly HttpMount[] },
): Promise<RunningHttpServer> {
  const { host, port } = parseHostPort(listen);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const done = (code: number, type: string, body: string) => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    try {
      // /readyz: the same checks (NATS connected, every component healthy); a load balancer or a
      // Kubernetes readiness probe sends no gRPC call to a replica that is not
      if (path === "/healthz" || path === "/readyz") {
        const h = o.healthy();
        return done(h.ok ? 200 : 503, "application/json", JSON.stringify({ status: h.ok ? "ok" : "unavailable", ...h.detail }) + "\n");
      }
      if (path === "/metrics") {
        // collectors may ask NATS (stream positions): a scrape that fails answers 500, never hangs the listener
        exposition(o.metrics).then(
          (m) => done(200, m.contentType, m.body),
          () => done(500, "text/plain", "metrics unavailable\n"),
        );
        return;
      }
      const route = o.routes?.[path] ?? o.mounts?.find((m) => path.startsWith(m.prefix))?.handle;
      if (route) {
        Promise.resolve(route(req, res)).catch(() => {
          if (!res.headersSent) done(500, "text/plain", "internal error\n");
          else res.destroy();
        });
        return;
      }
      const bare = o.mounts?.find((m) => path === m.prefix.slice(0, -1));
      if (bare && (req.method === "GET" || req.method === "HEAD")) {
        res.writeHead(308, { location: bare.prefix, "cache-control": "no-store" }).end();
        return;
      }
      done(404, "text/plain", "not found\n");
    } catch {
      if (!res.headersSent) done(500, "text/plain", "internal error\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  }).catch((e: unknown) => {
    throw listenError("control plane HTTP listener", host, port, e);
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
