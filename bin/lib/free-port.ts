import { createServer } from "node:net";

/**
 * A free TCP port on `host`, below Linux's default ephemeral range (32768–60999). A port the kernel
 * hands out for bind(0) comes from that range, which is also where every outgoing connection takes
 * its source port: between this probe and the caller's own bind, a connection of anyone on the
 * machine (a Postgres client, a NATS route) can take it — CI saw `sluice dev` and test clusters fail
 * with EADDRINUSE that way while other work ran. Below the range only another explicit bind can
 * collide, and a random start makes that unlikely. Falls back to bind(0) if nothing there is free.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const low = 20000;
  const span = 32768 - low;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < 64; i++) {
    const port = low + ((start + i * 7919) % span);
    if (await bindable(host, port)) return port;
  }
  return listenOnce(host, 0);
}

function bindable(host: string, port: number): Promise<boolean> {
  return listenOnce(host, port).then(
    () => true,
    () => false,
  );
}

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(port, host, () => {
      const addr = srv.address();
      const bound = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}
