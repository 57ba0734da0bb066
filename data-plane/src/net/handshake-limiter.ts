/**
 * Failed handshakes per source address, so that unauthenticated connections cannot fill the audit
 * buffer authenticated sessions need (issue 11), nor keep the node verifying tokens for them.
 *
 *  - Per source (an IPv4 address; an IPv6 /64, what one host is usually given) a token bucket:
 *    each handshake that fails for a reason of the client's (a rejected token, no policy, an unknown
 *    database, a protocol violation, a timeout) takes a token; with none left, the source's next
 *    connections are refused at their StartupMessage with 53300 and one line saying when to try
 *    again, before any token is verified or any event recorded; once it was told so `quietAfter`
 *    times, its further connections are closed at accept, before a TLS handshake.
 *  - Node-wide a second bucket bounds how many failed handshakes are recorded (session.started +
 *    session.denied + session.ended each): beyond it they are still refused, but counted, not
 *    recorded, so many sources together cannot fill the buffer either.
 * A source that has been failing (its bucket is below full) has its handshakes in flight counted
 *    against its tokens until each ends (`release`): without that, each token it regained let every
 *    handshake in flight at that moment through to verify its token, so a source with many
 *    connections at once got past its budget by its parallelism, again every second (the reliability
 *    run saw 1,092 verified refusals in a minute where the budget is 20 + 1 a second). A source with
 *    a full bucket is not counted so: a pipeline host opening 50 connections at once is not refused
 *    for failures it never had; its first wave can overshoot by its parallelism once.
 * Only handshakes that got as far as a StartupMessage count (what is recorded): a load balancer's
 * health checks, which connect and close, never do. Failures that are the node's own (no
 * snapshot, upstream or audit unavailable, internal errors) take no token. A successful handshake gives none back (a source that shares an address with an
 * attacker cannot refill the attacker's bucket). Pure: the clock is given.
 */

export interface HandshakeLimiterOptions {
  /** failed handshakes a source may have in a row (default 20) */
  burst?: number;
  /** failed handshakes a source regains per second (default 1) */
  perSecond?: number;
  /** failed handshakes recorded node-wide in a row (default 100) */
  recordBurst?: number;
  /** … and regained per second (default 10) */
  recordPerSecond?: number;
  /** sources remembered at most (default 10 000; full buckets are forgotten first, then the oldest) */
  maxSources?: number;
  /** refusals with 53300 a source gets while its bucket is empty; later connections are closed at accept (default 10) */
  quietAfter?: number;
}

/** What the connection handler asks (client-connection.ts). */
export interface HandshakeGuard {
  /**
   * At accept: whether to close the connection at once, unanswered: its source has no failed
   * handshakes left and was already told so (53300) `quietAfter` times — a TLS handshake per
   * connection of a storm costs the node's thread more than the storm costs the attacker.
   */
  drop(address: string): boolean;
  /**
   * the one-line refusal (53300) when `address` has no failed handshakes left (once it failed,
   * counting those in flight), else undefined: the handshake is admitted and in flight until `release`
   */
  admit(address: string): string | undefined;
  /** an admitted handshake ended (authenticated, refused or gone): its reservation is returned; once per admit */
  release(address: string): void;
  /** a handshake from `address` was refused with `sqlstate`: whether to record it */
  failed(address: string, sqlstate: string, reason: string): boolean;
}

export interface HandshakeLimiterStats {
  /** handshakes that failed for a reason of the client's */
  failed: number;
  /** connections refused because their source had no failed handshakes left */
  limited: number;
  /** connections of such a source closed at accept, unanswered */
  dropped: number;
  /** failed handshakes not recorded (the node-wide budget was spent) */
  unrecorded: number;
}

/** The refusals that are the node's, not the client's: they take no token. */
export function isClientFailure(sqlstate: string, reason: string): boolean {
  switch (sqlstate) {
    case "57P03": // no snapshot yet, audit unavailable
    case "0A000": // the upstream started with a setting sluice pins otherwise
    case "XX000":
    case "53300":
      return false;
    case "08006": // the authentication timeout is the client's; an upstream that cannot be reached is not
      return /timed out/i.test(reason);
    default:
      return true;
  }
}

/** The key a source is counted under: an IPv4 address (also IPv4-mapped IPv6), an IPv6 /64. */
export function sourceKey(address: string): string {
  const a = address.toLowerCase();
  if (a.startsWith("::ffff:") && a.includes(".")) return a.slice(7);
  if (!a.includes(":")) return a;
  // expand :: to find the first four groups
  const [head, tail] = a.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return `${groups.slice(0, 4).map((g) => (g.replace(/^0+/, "") || "0")).join(":")}::/64`;
}

class Bucket {
  /** 53300 refusals since the bucket last had a token */
  told = 0;
  constructor(
    public tokens: number,
    public at: number,
  ) {}

  /** tokens now, refilled since `at` up to `burst` */
  refill(now: number, burst: number, perSecond: number): number {
    this.tokens = Math.min(burst, this.tokens + ((now - this.at) / 1000) * perSecond);
    this.at = now;
    return this.tokens;
  }
}

export class HandshakeLimiter implements HandshakeGuard {
  readonly stats: HandshakeLimiterStats = { failed: 0, limited: 0, dropped: 0, unrecorded: 0 };
  private readonly sources = new Map<string, Bucket>();
  /** admitted handshakes not yet released, per source (kept apart: a bucket may be forgotten meanwhile) */
  private readonly inFlight = new Map<string, number>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly recordBurst: number;
  private readonly recordPerSecond: number;
  private readonly maxSources: number;
  private readonly quietAfter: number;
  private readonly recording: Bucket;

  constructor(o: HandshakeLimiterOptions, private readonly now: () => number) {
    this.burst = Math.max(1, o.burst ?? 20);
    this.perSecond = Math.max(0, o.perSecond ?? 1);
    this.recordBurst = Math.max(0, o.recordBurst ?? 100);
    this.recordPerSecond = Math.max(0, o.recordPerSecond ?? 10);
    this.maxSources = Math.max(1, o.maxSources ?? 10_000);
    this.quietAfter = Math.max(1, o.quietAfter ?? 10);
    this.recording = new Bucket(this.recordBurst, now());
  }

  drop(address: string): boolean {
    const b = this.sources.get(sourceKey(address));
    if (!b || b.refill(this.now(), this.burst, this.perSecond) >= 1) {
      if (b) b.told = 0;
      return false;
    }
    if (b.told < this.quietAfter) return false;
    this.stats.dropped++;
    return true;
  }

  admit(address: string): string | undefined {
    const key = sourceKey(address);
    const b = this.sources.get(key);
    const pending = this.inFlight.get(key) ?? 0;
    const tokens = b ? b.refill(this.now(), this.burst, this.perSecond) : this.burst;
    if ((tokens < this.burst ? tokens - pending : tokens) >= 1) {
      if (b) b.told = 0;
      this.inFlight.set(key, pending + 1);
      return undefined;
    }
    return this.limited(b!, pending);
  }

  release(address: string): void {
    const key = sourceKey(address);
    const pending = this.inFlight.get(key) ?? 0;
    if (pending <= 1) this.inFlight.delete(key);
    else this.inFlight.set(key, pending - 1);
  }

  private limited(b: Bucket, pending: number): string {
    b.told++;
    this.stats.limited++;
    const wait = this.perSecond > 0 ? Math.max(1, Math.ceil((1 + pending - b.tokens) / this.perSecond)) : undefined;
    return `too many failed connection attempts from this address; try again ${wait === undefined ? "later" : `in ${wait} s`}`;
  }

  failed(address: string, sqlstate: string, reason: string): boolean {
    if (!isClientFailure(sqlstate, reason)) return true;
    this.stats.failed++;
    const now = this.now();
    const key = sourceKey(address);
    let b = this.sources.get(key);
    if (!b) {
      this.makeRoom(now);
      b = new Bucket(this.burst, now);
      this.sources.set(key, b);
    } else b.refill(now, this.burst, this.perSecond);
    b.tokens = Math.max(0, b.tokens - 1);
    if (this.recording.refill(now, this.recordBurst, this.recordPerSecond) >= 1) {
      this.recording.tokens--;
      return true;
    }
    this.stats.unrecorded++;
    return false;
  }

  /** sources remembered (for tests and metrics) */
  get size(): number {
    return this.sources.size;
  }

  private makeRoom(now: number): void {
    if (this.sources.size < this.maxSources) return;
    // a full bucket is the same as none
    for (const [k, b] of this.sources) if (b.refill(now, this.burst, this.perSecond) >= this.burst) this.sources.delete(k);
    // then the longest known (Map order is insertion order)
    for (const k of this.sources.keys()) {
      if (this.sources.size < this.maxSources) break;
      this.sources.delete(k);
    }
  }
}
