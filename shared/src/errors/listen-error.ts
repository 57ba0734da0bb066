import { SluiceError } from "./sluice-error.js";

const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied (a port below 1024 needs privileges)",
  EADDRNOTAVAIL: "address not available on this machine",
};

/**
 * A listener that could not bind, as one line naming what and where (`data plane HTTP listener
 * 127.0.0.1:7480: address already in use`): the start-up failure an operator acts on.
 */
export function listenError(what: string, host: string, port: number, err: unknown): SluiceError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? "";
  const reason = REASONS[code] ?? (err instanceof Error ? err.message : String(err));
  const where = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new SluiceError("unavailable", `${what} ${where}: ${reason}`, { code, host, port }, { cause: err });
}
