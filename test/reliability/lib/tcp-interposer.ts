/**
 * A TCP relay between the data plane and its upstream that can go silent: `pause()` stops
 * forwarding bytes in both directions (they are held, as a stalled server or a network that drops
 * nothing but delivers nothing would), new connections are accepted and held the same way, and
 * `resume()` delivers everything held, in order. Connections still close through it: a stall is
 * not a partition of the hosts' kernels.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { freePort } from "../../lib/free-port.js";

export interface TcpInterposer {
  port: number;
  readonly paused: boolean;
  /** connections open through it now */
  readonly open: number;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpInterposer(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpInterposer> {
  const port = await freePort();
  let paused = false;
  const pipes = new Set<{ flush(): void; destroy(): void }>();

  const srv: Server = createServer((client) => {
    const server = connect(targetPort, targetHost);
    const held: Array<[Socket, Buffer]> = [];
    const forward = (to: Socket) => (b: Buffer) => {
      if (paused) held.push([to, b]);
      else to.write(b);
    };
    client.on("data", forward(server));
    server.on("data", forward(client));
    const pipe = {
      flush() {
        for (const [to, b] of held.splice(0)) if (!to.destroyed) to.write(b);
      },
      destroy() {
        client.destroy();
        server.destroy();
      },
    };
    pipes.add(pipe);
    const end = () => {
      pipes.delete(pipe);
      pipe.destroy();
    };
    client.on("error", end).on("close", end);
    server.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    port,
    get paused() {
      return paused;
    },
    get open() {
      return pipes.size;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const p of pipes) p.flush();
    },
    async close() {
      for (const p of pipes) p.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}
