import { createServer } from "node:net";
import { listenError } from "../errors/listen-error.js";

/**
 * Binds `host:port` and releases it at once: throws the listener's failure (port in use, no
 * permission) named by `what`, before a server that reports it less clearly is started on it.
 * Port 0 (any free port) always succeeds.
 */
export async function probeListen(what: string, host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (e) => reject(listenError(what, host, port, e)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
