import type { KV } from "@nats-io/kv";
import { decideLease, leaseStillHeld, parseLeaseRecord, renewIntervalMs, type ObservedLease } from "./lease.js";

export interface LeaseCallbacks {
  /** this holder became leader */
  onAcquired(): void;
  /** this holder is no longer leader (renewal failed, key taken over, or stop()) */
  onLost(reason: string): void;
}

export interface KvLeaseOptions {
  kv: KV;
  key: string;
  /** unique per process, e.g. `<node>/<pid>/<random>` */
  holder: string;
  /** must not exceed the bucket TTL, or the key could outlive a dead leader by the difference */
  ttlMs: number;
  now?: () => number;
  onError?: (err: unknown) => void;
}

/**
 * Leader election with a KV key: create-if-absent to acquire, update(key, value, revision) to renew
 * before the TTL, leadership dropped as soon as a renewal cannot be proven in time. The decisions are
 * in lease.ts; this class only performs them.
 */
export class KvLease {
  private timer: NodeJS.Timeout | undefined;
  private revision = 0;
  private lastRenewedAt = 0;
  private leader = false;
  private stopped = true;
  private running: Promise<void> = Promise.resolve();
  private cb: LeaseCallbacks | undefined;
  private readonly now: () => number;

  constructor(private readonly o: KvLeaseOptions) {
    this.now = o.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leader && leaseStillHeld(this.lastRenewedAt, this.now(), this.o.ttlMs);
  }

  start(cb: LeaseCallbacks): void {
    this.cb = cb;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops campaigning; a leader deletes its key (at its revision) so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    if (this.leader) {
      this.lose("stopped");
      try {
        await this.o.kv.delete(this.o.key, { previousSeq: this.revision });
      } catch {
        // someone else holds it already, or NATS is gone: the TTL frees the key either way
      }
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().then((next) => this.schedule(next));
    }, ms);
    this.timer.unref?.();
  }

  private lose(reason: string): void {
    if (!this.leader) return;
    this.leader = false;
    this.cb?.onLost(reason);
  }

  /** One step; returns the delay before the next one. */
  private async tick(): Promise<number> {
    const ttl = this.o.ttlMs;
    if (this.leader && !leaseStillHeld(this.lastRenewedAt, this.now(), ttl)) this.lose("renewal overdue");
    let observed: ObservedLease | undefined;
    try {
      const e = await this.o.kv.get(this.o.key);
      observed = e ? { record: e.operation === "PUT" ? parseLeaseRecord(e.value) : undefined, revision: e.revision } : undefined;
    } catch (err) {
      this.o.onError?.(err);
      return Math.min(renewIntervalMs(ttl), 500);
    }
    if (this.leader && (!observed || observed.revision !== this.revision || observed.record?.holder !== this.o.holder)) {
      this.lose("lease taken over");
    }
    const action = decideLease(observed, this.o.holder, this.now(), ttl);
    if (action.do === "wait") return action.retryInMs;
    try {
      const started = this.now();
      const payload = JSON.stringify(action.record);
      this.revision = action.do === "create"
        ? await this.o.kv.create(this.o.key, payload)
        : await this.o.kv.update(this.o.key, payload, action.revision);
      // count the lease from when we asked, not when the answer came: conservative
      this.lastRenewedAt = started;
      if (!this.leader && !this.stopped) {
        this.leader = true;
        this.cb?.onAcquired();
      }
    } catch (err) {
      // lost the compare-and-set: someone else won this revision
      this.lose("lease taken over");
      this.o.onError?.(err);
    }
    return renewIntervalMs(ttl);
  }
}
