/**
 * The thread `sluice dev` runs its data plane on (see dev-data-plane.ts): one node as
 * `sluice data-plane` composes it, with a NATS connection of its own, answering the dev command's
 * waitForRevision and stop. Its log lines go to the main thread, which owns stderr.
 */
import { parentPort, workerData } from "node:worker_threads";
import { startDataPlaneNode, type DataPlaneNode } from "@sluice/data-plane";
import { createLogger } from "@sluice/shared/logging";
import { toWire, type DevDataPlaneStart, type FromWorker, type ToWorker } from "./dev-data-plane.js";

const port = parentPort!;
const start = workerData as DevDataPlaneStart;
const send = (m: FromWorker) => port.postMessage(m);
const log = createLogger({
  level: start.logLevel,
  name: "dev",
  destination: { write: (chunk: string) => (send({ type: "log", chunk }), true) } as unknown as NodeJS.WritableStream,
});
const pending = new Int32Array(start.pendingCounter);

async function serve(): Promise<void> {
  let node: DataPlaneNode;
  try {
    node = await startDataPlaneNode({ config: start.config, logger: log, snapshotCacheFile: start.snapshotCacheFile });
  } catch (e) {
    // the main thread ends this thread when it has read why
    send({ type: "failed", error: toWire(e) });
    return;
  }
  const count = () => Atomics.store(pending, 0, node.auditPending());
  // unref'd: it must not keep the thread alive after its stop
  setInterval(count, 100).unref();

  port.on("message", (m: ToWorker) => {
    const answer = (p: Promise<unknown>) =>
      p.then(
        (value) => send({ type: "reply", id: m.id, value }),
        (e: unknown) => send({ type: "reply", id: m.id, error: toWire(e) }),
      );
    switch (m.type) {
      case "waitForRevision":
        void answer(node.snapshots.waitForRevision(m.revision, m.timeoutMs).then(() => undefined));
        break;
      case "stop":
        void answer(
          node.stop(m.graceMs, { flushMs: m.flushMs }).then((r) => {
            count();
            return r;
          }),
        );
        break;
    }
  });
  send({ type: "ready", port: node.port, httpPort: node.httpPort });
}

void serve();
