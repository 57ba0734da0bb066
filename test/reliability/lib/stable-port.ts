import { createServer } from "node:net";

/**
 * A free loopback port for a listener that must come back on the same port after a restart. Taken
 * below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768 and up here), where no
 * outgoing connection of this machine's busy tests can land on it between a stop and a start, as
 * one did on a port from free-port.ts (bind to 0 hands out ports of that very range).
 */
export async function stablePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free port between 20000 and 32000");
}
