import { before, test } from "node:test";
import assert from "node:assert/strict";
import { loadSqlParser, SqlPrepared, classifySql, type StatementInfo } from "@sluice/shared/sql";
import { SluiceError } from "@sluice/shared/errors";
import type { Decision, PolicySnapshot } from "@sluice/shared/policy";
import { snapshotEnforcer } from "../session/snapshot-enforcer.js";
import { staticSnapshots, type SessionInfo } from "../session/session-hooks.js";
import type { FunctionFacts } from "./volatile-calls.js";
import { volatilityEnforcer, type FunctionFactsSource } from "./volatility-enforcer.js";

before(loadSqlParser);

const snap: PolicySnapshot = {
  revision: 1, hash: "h", appliedBy: "test", appliedAt: new Date(0).toISOString(),
  bundle: {
    issuers: [], groups: ["ro", "rw"], resources: [], masking: [],
    policies: [
      { name: "ro", groups: ["ro"], resources: ["app"], allow: ["read"] },
      { name: "rw", groups: ["rw"], resources: ["app"], allow: ["read", "write"] },
    ],
  },
};
const session = (groups: string[]): SessionInfo => ({
  sessionId: "s1", nodeId: "n1", region: "r", resource: "app", clientUser: "u", clientAddress: "127.0.0.1:1",
  subject: "sub", issuer: "dev", groups, claims: {}, policyRevision: 1,
});
const ro = session(["ro"]);
const rw = session(["rw"]);

const facts = (extra: Array<[string, boolean]> = []): FunctionFacts => {
  const user = new Map<string, boolean>([["purge", true], ["public.purge", true], ["item_count", false], ["public.item_count", false]]);
  for (const [name, w] of extra) user.set(name, w).set(`public.${name}`, w);
  return { builtins: new Set(["count", "now"]), user, volatileOperators: new Set(), volatileReads: new Set() };
};

/** a catalog whose facts are `now` (or none), and `load` answers reads */
function source(o: { now?: FunctionFacts; load?: (maxAgeMs?: number) => Promise<FunctionFacts> }): FunctionFactsSource & { reads: number[] } {
  const reads: number[] = [];
  return {
    reads,
    functionFactsNow: () => o.now,
    functionFacts: (_r, maxAgeMs) => {
      reads.push(maxAgeMs ?? -1);
      return o.load ? o.load(maxAgeMs) : Promise.reject(new Error("no catalog"));
    },
  };
}

const enforcer = (src: FunctionFactsSource) => volatilityEnforcer(snapshotEnforcer(staticSnapshots(snap)), { snapshots: staticSnapshots(snap), catalog: src });

test("with facts at hand the decision is synchronous: a volatile call is a write (denied for read-only, allowed as a write otherwise), the rest unchanged", () => {
  const e = enforcer(source({ now: facts() }));
  const d = e.decide("SELECT purge()", "simple", ro) as Decision;
  assert.equal(d.action, "deny");
  assert.match(d.reason, /no policy allows write .*: it calls purge\(\), a function pg_proc marks volatile/);
  assert.deepEqual(d.statements[0]!.classes, ["write"]);
  const w = e.decide("SELECT purge()", "simple", rw) as Decision;
  assert.equal(w.action, "allow");
  assert.equal(w.rule, "rw/allow:write");
  for (const sql of ["SELECT item_count()", "SELECT count(*) FROM t", "SELECT 1"]) assert.equal((e.decide(sql, "simple", ro) as Decision).action, "allow", sql);
  // judged once per decision and facts: the same object again
  assert.equal(e.decide("SELECT purge()", "simple", rw), w);
});

test("without facts the decision waits for one read of the catalog; a catalog that cannot be read refuses (unavailable)", async () => {
  let loaded: FunctionFacts | undefined;
  const src = source({ load: async () => (loaded = facts()) });
  const e = enforcer(src);
  const p = e.decide("SELECT purge()", "simple", ro);
  assert.ok(p instanceof Promise);
  assert.equal((await p).action, "deny");
  assert.ok(loaded);
  // a statement with nothing to look up never waits
  assert.equal((e.decide("SELECT 1", "simple", ro) as Decision).action, "allow");
  const broken = enforcer(source({}));
  await assert.rejects(Promise.resolve(broken.decide("SELECT count(*) FROM t", "simple", ro)), (err: unknown) => SluiceError.is(err, "unavailable") && /function catalog of "app"/.test((err as Error).message));
});

test("a name the facts do not know is read again once (it may be new); still unknown, it is a write", async () => {
  const later = facts([["created_since", false]]);
  const src = source({ now: facts(), load: async () => later });
  const e = enforcer(src);
  const ok = await e.decide("SELECT created_since()", "simple", ro);
  assert.equal(ok.action, "allow", "found stable on the second read");
  assert.deepEqual(src.reads, [1000]);
  const unknown = await e.decide("SELECT never_created()", "simple", ro);
  assert.equal(unknown.action, "deny");
  assert.match(unknown.reason, /never_created\(\), a function the upstream's catalog does not list/);
});

test("EXECUTE of a prepared statement that calls a volatile function is a write too", () => {
  const e = enforcer(source({ now: facts() }));
  const prepared = new SqlPrepared();
  const c = classifySql("PREPARE p AS SELECT purge()");
  assert.ok(c.ok);
  prepared.observe(c.statements as StatementInfo[]);
  assert.equal((e.decide("PREPARE p AS SELECT purge()", "simple", ro) as Decision).action, "deny");
  const d = e.decide("EXECUTE p", "simple", ro, prepared) as Decision;
  assert.equal(d.action, "deny");
  assert.equal((e.decide("EXECUTE p", "simple", rw, prepared) as Decision).action, "allow");
});

test("statements sharing a decision by shape keep their own text, clean or raised to a write", () => {
  const e = enforcer(source({ now: facts() }));
  for (const [a, b, action] of [
    ["SELECT count(*) FROM t WHERE id = 1", "SELECT count(*) FROM t WHERE id = 2", "allow"],
    ["SELECT purge() FROM t WHERE id = 1", "SELECT purge() FROM t WHERE id = 2", "deny"],
  ] as const) {
    const da = e.decide(a, "simple", ro) as Decision;
    const db = e.decide(b, "simple", ro) as Decision;
    assert.equal(da.action, action, a);
    assert.equal(db.action, action, b);
    assert.equal(da.statements[0]!.text, a);
    assert.equal(db.statements[0]!.text, b);
  }
});

test("a statement naming a type whose coercion may write is a write, with no function call in sight; without such types nothing changes, and facts not at hand are read first", async () => {
  const typed: FunctionFacts = { ...facts(), volatileTypes: new Set(["checked", "public.checked"]) };
  const e = enforcer(source({ now: typed }));
  const d = e.decide("SELECT 'x'::checked", "simple", ro) as Decision;
  assert.equal(d.action, "deny");
  assert.match(d.reason, /names the type checked, whose coercion/);
  assert.equal((e.decide("SELECT 'checked'::text", "simple", ro) as Decision).action, "allow");
  assert.equal((e.decide("SELECT 'x'::checked", "simple", rw) as Decision).action, "allow");
  // no volatile types: a cast alone does not even look at the catalog
  const plain = source({ now: facts() });
  assert.equal((enforcer(plain).decide("SELECT 'x'::checked", "simple", ro) as Decision).action, "allow");
  assert.deepEqual(plain.reads, []);
  // facts not at hand: a statement that may coerce waits for them
  const cold = source({ load: async () => typed });
  const waited = enforcer(cold).decide("SELECT checked 'x'", "simple", ro);
  assert.ok(waited instanceof Promise);
  assert.equal((await waited).action, "deny");
  assert.equal(cold.reads.length, 1);
});
