import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { natsNames } from "@sluice/shared/nats";
import type { Logger } from "@sluice/shared/logging";
import type { CancelRouter } from "./session/session-hooks.js";

/** The cancel key a node handed to its client, minus the node part (it is in the subject). */
export interface LocalCancelKey {
  pid: number;
  secret: number;
}

export interface NatsCancelRouterOptions {
  nc: NatsConnection;
  prefix?: string;
  /** this node's number, as encoded in the BackendKeyData it hands out */
  nodeId: number;
  /** forwards a cancel for one of this node's own sessions to its upstream */
  cancelLocal(key: LocalCancelKey): void | Promise<void>;
  logger?: Logger;
}

export interface NatsCancelRouter extends CancelRouter {
  /** resolves once the subscription is registered with the server (so a cancel sent next is heard) */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/** 8 bytes: pid, secret (big-endian int32), like the (F) CancelRequest body. */
export function encodeCancelKey(k: LocalCancelKey): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeInt32BE(k.pid | 0, 0);
  b.writeInt32BE(k.secret | 0, 4);
  return b;
}

export function decodeCancelKey(d: Uint8Array): LocalCancelKey | undefined {
  if (d.length !== 8) return undefined;
  const b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  return { pid: b.readInt32BE(0), secret: b.readInt32BE(4) };
}

/**
 * Cancel routing between data-plane nodes over core NATS (design: data path 8). A client's
 * CancelRequest may reach any node (a load balancer picks one); the BackendKeyData names the node
 * that owns the session. The receiving node publishes the key on that node's cancel subject; each node
 * listens on its own subject and cancels its own session. Fire-and-forget like Postgres itself: a
 * cancel is advisory and the client never gets an answer, so a lost one costs nothing but the cancel.
 */
export function startNatsCancelRouter(o: NatsCancelRouterOptions): NatsCancelRouter {
  const names = natsNames(o.prefix ?? "");
  const sub: Subscription = o.nc.subscribe(names.cancelSubject(String(o.nodeId)), {
    callback: (err, msg) => {
      if (err) {
        o.logger?.warn({ err }, "cancel subscription error");
        return;
      }
      const key = decodeCancelKey(msg.data);
      if (!key) {
        o.logger?.warn({ bytes: msg.data.length }, "ignoring malformed routed cancel");
        return;
      }
      Promise.resolve()
        .then(() => o.cancelLocal(key))
        .catch((e: unknown) => o.logger?.warn({ err: e }, "routed cancel failed"));
    },
  });
  return {
    routeCancel(nodeId, localKey) {
      if (nodeId === o.nodeId) return o.cancelLocal(localKey);
      o.nc.publish(names.cancelSubject(String(nodeId)), encodeCancelKey(localKey));
    },
    ready: () => o.nc.flush(),
    async stop() {
      if (!o.nc.isClosed()) await sub.drain().catch(() => undefined);
    },
  };
}
