// Reads sluice's audit stream with nats.js (v3) and prints one CloudEvent per line.
//   SLUICE_NATS_URL    the NATS server (default nats://127.0.0.1:4222)
//   SLUICE_NATS_PREFIX the deployment's stream prefix, if any
//   SLUICE_NATS_CREDS  an auditor user's credentials file, if the server needs one
//   SLUICE_NATS_INBOX  with such credentials, the inbox space the auditor role may use:
//                      _INBOX.<prefix, or sluice>.auditor.<the user's name>
//   --until-caught-up  stop at the end of the stream instead of following it
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

const prefix = process.env.SLUICE_NATS_PREFIX ?? "";
const stream = prefix ? `${prefix.toUpperCase()}_SLUICE_AUDIT` : "SLUICE_AUDIT";
const creds = process.env.SLUICE_NATS_CREDS;
const nc = await connect({
  servers: process.env.SLUICE_NATS_URL ?? "nats://127.0.0.1:4222",
  ...(creds ? { authenticator: credsAuthenticator(readFileSync(creds)) } : {}),
  ...(process.env.SLUICE_NATS_INBOX ? { inboxPrefix: process.env.SLUICE_NATS_INBOX } : {}),
});
const untilCaughtUp = process.argv.includes("--until-caught-up");
const last = (await (await jetstreamManager(nc)).streams.info(stream)).state.last_seq;
if (untilCaughtUp && last === 0) process.exit(0);

// an ordered consumer: no state on the server, in stream order, re-created on its own after a reconnect
const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
const messages = await consumer.consume();
for await (const m of messages) {
  const text = new TextDecoder().decode(m.data);
  // a batch (content-type application/cloudevents-batch+json) is a JSON array of events in order
  const batch = m.headers?.get("content-type") === "application/cloudevents-batch+json" || text.startsWith("[");
  for (const event of batch ? JSON.parse(text) : [JSON.parse(text)]) {
    process.stdout.write(JSON.stringify({ streamSeq: m.seq, ...event }) + "\n");
  }
  if (untilCaughtUp && m.seq >= last) break;
}
await nc.close();
