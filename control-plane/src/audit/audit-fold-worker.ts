/**
 * The thread the control plane folds the audit stream on (see audit-fold.ts): the read model's
 * projector and the sealer, with a NATS connection of their own. Its log lines go to the main
 * thread, which owns the log destination.
 */
import { parentPort, workerData } from "node:worker_threads";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { createLogger } from "@sluice/shared/logging";
import { natsConnectOptions, natsNames } from "@sluice/shared/nats";
import { ReadModel } from "../projections/read-model/read-model.js";
import { ReadModelProjector } from "../projections/read-model/read-model-projector.js";
import { Sealer } from "../sealer/sealer.js";
import { signingKeyFor } from "./audit-files.js";
import { toWire, type AuditFoldStart, type AuditFoldState, type FromAuditFold, type ToAuditFold } from "./audit-fold.js";

const port = parentPort!;
const start = workerData as AuditFoldStart;
const send = (m: FromAuditFold) => port.postMessage(m);
const logger = createLogger({
  level: start.logLevel,
  name: "control-plane",
  destination: { write: (chunk: string) => (send({ type: "log", chunk }), true) } as unknown as NodeJS.WritableStream,
}).child({ component: "audit" });

async function serve(): Promise<void> {
  const { config } = start;
  const names = natsNames(config.nats.prefix);
  let nc;
  let model: ReadModel | undefined;
  let projector: ReadModelProjector;
  let sealer: Sealer;
  try {
    nc = await connect({
      ...natsConnectOptions(config.nats, { name: `sluice-control-plane-${config.node}-audit`, inboxPrefix: names.controlPlaneInbox(config.node) }),
      maxReconnectAttempts: -1,
    });
    const leases = await new Kvm(nc).open(names.leaseBucket);
    model = ReadModel.open(start.readModel);
    projector = new ReadModelProjector({ nc, names, model, durable: `read-model-${start.instance}`, logger });
    await projector.start();
    const sc = config.controlPlane.sealer;
    sealer = new Sealer({
      nc, names, leases, key: signingKeyFor(config, start.readModel), everyEvents: sc.everyEvents, everySeconds: sc.everySeconds,
      holder: start.instance, logger: logger.child({ component: "sealer" }),
    }).start();
  } catch (e) {
    send({ type: "failed", error: toWire(e) });
    await model?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    return;
  }
  // whether NATS is reachable now: a stop while it is gone does not wait on requests that cannot be answered
  let reachable = true;
  const conn = nc;
  void (async () => {
    for await (const st of conn.status()) {
      if (st.type === "disconnect") reachable = false;
      else if (st.type === "reconnect") reachable = true;
    }
  })().catch(() => undefined);
  const state = (): AuditFoldState => ({ position: projector.position, sealer: sealer.status() });
  // the main thread's figures (metrics, /healthz detail, position checks) are at most this old
  let last = "";
  const report = setInterval(() => {
    const s = state();
    const text = JSON.stringify(s);
    if (text !== last) send({ type: "state", state: s });
    last = text;
  }, 100);
  report.unref();
  port.on("message", (m: ToAuditFold) => {
    const answer = (p: Promise<unknown>) =>
      p.then(
        (value) => send({ type: "reply", id: m.id, value, state: state() }),
        (e: unknown) => send({ type: "reply", id: m.id, error: toWire(e), state: state() }),
      );
    switch (m.type) {
      case "catchUp":
        void answer(projector.catchUp(m.timeoutMs));
        break;
      case "rebuild":
        void answer(projector.rebuild());
        break;
      case "sealNow":
        void answer(sealer.sealNow());
        break;
      case "stopSealer":
        void answer(sealer.stop());
        break;
      case "stop":
        clearInterval(report);
        void answer(
          (async () => {
            // with NATS gone the seal and the lease hand-back cannot happen: the lease runs out and the next leader seals
            if (reachable) {
              await sealer.stop();
              await projector.stop();
            }
            await model!.close();
            await conn.close();
          })(),
        );
        break;
    }
  });
  send({ type: "ready", state: state() });
}

void serve();
