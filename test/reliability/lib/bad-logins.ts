/**
 * Connection attempts with bad tokens at a steady rate alongside a scenario's load: a token of an
 * issuer nobody trusts (signed by another key), an expired one, and a string that is no JWT at all,
 * in turn. Each attempt is a real TLS connection and startup through the proxy; what it ended with
 * is counted by SQLSTATE. An attempt that got in is counted as `accepted` (it must never happen).
 */
import pg from "pg";
import { createDevIssuer } from "@sluice/shared/auth";
import { codeOf } from "./load.js";
import type { ReliabilityStack } from "./reliability-stack.js";

export interface BadLogins {
  readonly attempts: number;
  readonly outcomes: Map<string, number>;
  /** attempts per second actually started */
  rate(): number;
  stop(): Promise<void>;
}

export async function startBadLogins(s: ReliabilityStack, o: { perSecond: number; maxInFlight?: number }): Promise<BadLogins> {
  const stranger = await createDevIssuer({ issuer: s.dev.issuer, audience: "sluice" });
  const forged = await stranger.mint({ sub: "repo:evil/forged", groups: ["ci"], ttlSec: 3600 });
  const expired = await s.dev.mint({ sub: "repo:acme/old", groups: ["ci"], ttlSec: 60, now: new Date(Date.now() - 3_600_000) });
  const tokens = [forged, expired, "not-a-jwt"];
  const outcomes = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  let attempts = 0;
  let running = true;
  const t0 = Date.now();
  const one = async (token: string) => {
    const c = new pg.Client({ ...s.pgConfig(token), application_name: "rel-bad-login" });
    c.on("error", () => undefined);
    let code = "accepted";
    try {
      await c.connect();
    } catch (e) {
      code = codeOf(e);
    } finally {
      await c.end().catch(() => undefined);
    }
    outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
  };
  const loop = (async () => {
    const every = 1000 / o.perSecond;
    let next = Date.now();
    while (running) {
      if (inFlight.size < (o.maxInFlight ?? o.perSecond)) {
        const p: Promise<void> = one(tokens[attempts % tokens.length]!).finally(() => inFlight.delete(p));
        inFlight.add(p);
        attempts++;
      }
      next += every;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (wait < -1000) next = Date.now(); // fell behind: do not burst to catch up
    }
  })();
  return {
    get attempts() {
      return attempts;
    },
    outcomes,
    rate: () => attempts / ((Date.now() - t0) / 1000),
    async stop() {
      running = false;
      await loop;
      await Promise.allSettled([...inFlight]);
    },
  };
}
