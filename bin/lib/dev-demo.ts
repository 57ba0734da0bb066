import { readFileSync } from "node:fs";
import pg from "pg";
import type { DevIssuer } from "@sluice/shared/auth";
import type { Bundle } from "@sluice/shared/policy";
import type { DevUpstream } from "./dev-bundle.js";

export interface DemoOptions {
  host: string;
  port: number;
  resource: string;
  upstream: DevUpstream;
  caFile: string;
  issuer: DevIssuer;
  /** the bundle in force; the demo applies it plus its own pipeline policy and masking */
  bundle: Bundle;
  apply(bundle: Bundle): Promise<number>;
  out(line: string): void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS customers (
  id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, card_number text NOT NULL, note text
);
CREATE TABLE IF NOT EXISTS orders (
  id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), total numeric(10,2) NOT NULL,
  placed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '4111 1111 1111 1111', 'prefers email'),
  (2, 'Grace Hopper', 'grace@example.org', '5500 0000 0000 0004', NULL),
  (3, 'Alan Turing', 'alan@example.net', '3400 0000 0000 009', 'card on file: 4012888888881881')
ON CONFLICT (id) DO NOTHING;
INSERT INTO orders (id, customer_id, total)
  SELECT g, 1 + g % 3, (g * 7.5)::numeric(10,2) FROM generate_series(1, 20) g
ON CONFLICT (id) DO NOTHING;
`;

/** The demo's additions: a pipeline identity that may read and write but not drop, and masked PII. */
export function demoBundle(base: Bundle, resource: string): Bundle {
  const groups = new Set([...(base.groups ?? []), "pipeline"]);
  return {
    ...base,
    groups: [...groups],
    policies: [
      ...base.policies.filter((p) => p.name !== "demo-pipeline"),
      {
        name: "demo-pipeline",
        groups: ["pipeline"],
        resources: [resource],
        allow: ["read", "write"],
        deny: ["drop", "truncate", "delete-without-where"],
      },
    ],
    masking: [
      ...base.masking.filter((m) => m.name !== "demo-pii"),
      { name: "demo-pii", resources: [resource], columns: ["customers.email", "customers.card_number"], classifiers: ["credit-card"], strategy: "partial" },
    ],
  };
}

/**
 * A short scripted session through the proxy, as a CI pipeline would run it: set up a schema, then as
 * the `pipeline` identity an allowed read, a blocked DROP (the connection stays usable) and a masked
 * SELECT. Prints what happens.
 */
export async function runDemo(o: DemoOptions): Promise<void> {
  const ca = readFileSync(o.caFile);
  const client = async (sub: string, groups: string[]) => {
    const c = new pg.Client({
      host: o.host,
      port: o.port,
      database: o.resource,
      user: sub,
      password: await o.issuer.mint({ sub, groups, ttlSec: 600 }),
      ssl: { ca, servername: "localhost" },
      application_name: "sluice-demo",
    });
    c.on("error", () => undefined);
    await c.connect();
    return c;
  };
  const say = (s: string) => o.out(`demo: ${s}`);

  say(`creating the demo schema (customers, orders) in ${o.resource} as identity "me" (group dev)`);
  const dev = await client("me", ["dev"]);
  try {
    await dev.query(SCHEMA);
  } finally {
    await dev.end();
  }
  const rev = await o.apply(demoBundle(o.bundle, o.resource));
  say(`applied policy revision ${rev}: group "pipeline" may read and write, never drop; customers.email and card numbers are masked`);

  const ci = await client("ci-deploy", ["pipeline"]);
  try {
    const r = await ci.query("SELECT count(*)::int AS orders, sum(total)::text AS revenue FROM orders");
    say(`ALLOWED  SELECT count(*), sum(total) FROM orders -> ${r.rows[0].orders} orders, revenue ${r.rows[0].revenue}`);
    try {
      await ci.query("DROP TABLE customers");
      say("UNEXPECTED: DROP TABLE customers was allowed");
    } catch (e) {
      const err = e as { code?: string; message: string };
      say(`BLOCKED  DROP TABLE customers -> ${err.code} ${err.message}`);
    }
    try {
      const m = await ci.query("SELECT name, email, card_number, note FROM customers ORDER BY id");
      for (const row of m.rows as Array<Record<string, string | null>>) {
        say(`MASKED   ${row.name} | ${row.email} | ${row.card_number} | ${row.note ?? ""}`);
      }
    } catch (e) {
      const err = e as { code?: string; message: string };
      say(`masked select refused -> ${err.code} ${err.message}`);
    }
    const still = await ci.query("SELECT count(*)::int AS n FROM customers");
    say(`the session is still usable after the block: ${still.rows[0].n} customers`);
  } finally {
    await ci.end();
  }
  say("every statement above is in the audit stream: try `sluice sessions list` or `sluice audit tail`");
}
