import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileMasking, maskLooseText } from "./mask-rules.js";
import { screenMessageFields, withheldMessage } from "./message-fields.js";
import type { Exposure, ExposureLevel } from "./exposure.js";

const KEY = Buffer.from("k");
const c = compileMasking([{ resources: ["db"], columns: ["customers.email"], classifiers: ["email", "credit-card"], strategy: "hash" }], "db", KEY)!;
const scan = (s: string) => maskLooseText(c, s);
const exposure = (level: ExposureLevel): Exposure => ({ level, reasons: level === "clean" ? [] : ["it reads masked columns through customers"] });

/** what Postgres sends for `INSERT … SELECT email …` hitting a unique index */
const UNIQUE = {
  S: "ERROR", V: "ERROR", C: "23505",
  M: 'duplicate key value violates unique constraint "copies_e_key"',
  D: "Key (e)=(zqxw#example.com) already exists.",
  s: "public", t: "copies", n: "copies_e_key",
  F: "nbtinsert.c", L: "664", R: "_bt_check_unique",
};

test("masked: data-bearing fields are withheld, SQLSTATE and the server's names stay", () => {
  const out = screenMessageFields(UNIQUE, "error", exposure("masked"), scan)!;
  assert.equal(out.C, "23505");
  assert.deepEqual([out.s, out.t, out.n, out.F, out.R], ["public", "copies", "copies_e_key", "nbtinsert.c", "_bt_check_unique"]);
  assert.match(out.M!, /^sluice withheld the text of this error \(SQLSTATE 23505 integrity_constraint_violation\): it reads masked columns through customers$/);
  assert.ok(!JSON.stringify(out).includes("zqxw"), JSON.stringify(out));
  assert.deepEqual(Object.keys(out).slice(0, 5), ["S", "V", "C", "M", "D"], "the server's order, the message where it was");
});

test("code: user code sets names at will (RAISE … USING COLUMN), so they go too", () => {
  const raised = { S: "ERROR", V: "ERROR", C: "P0001", M: "zqxw#example.com", c: "zqxw#example.com", t: "x", W: "PL/pgSQL function leak() line 3 at RAISE", H: "h" };
  const out = screenMessageFields(raised, "error", exposure("code"), scan)!;
  assert.deepEqual(Object.keys(out).sort(), ["C", "D", "M", "S", "V"]);
  assert.equal(out.C, "P0001");
  assert.ok(!JSON.stringify(out).includes("zqxw"));
});

test("clean: nothing changes unless a classifier matches, in any field", () => {
  const plain = { S: "ERROR", V: "ERROR", C: "22P02", M: 'invalid input syntax for type integer: "abc"', P: "8" };
  assert.equal(screenMessageFields(plain, "error", exposure("clean"), scan), null);
  const withEmail = { ...plain, M: 'invalid input syntax for type integer: "carol@example.org"', D: "card 4111 1111 1111 1111" };
  const out = screenMessageFields(withEmail, "error", exposure("clean"), scan)!;
  assert.match(out.M!, /"h:[A-Za-z0-9_-]{16}"$/);
  assert.ok(!out.D!.includes("4111 1111"));
  assert.equal(out.P, "8");
});

test("a notice says it is a notice; an unknown SQLSTATE never makes the message lie", () => {
  assert.match(withheldMessage("notice", "00000", exposure("code")), /^sluice withheld the text of this notice \(SQLSTATE 00000 successful_completion\)/);
  assert.match(withheldMessage("error", undefined, { level: "code", reasons: [] }), /SQLSTATE XX000 internal_error\): the statement may have read masked data/);
});

const FIELD_CODES = ["S", "V", "C", "M", "D", "H", "P", "p", "q", "W", "s", "t", "c", "d", "n", "F", "L", "R", "Y", "z"];
/** fields only the server fills, with no data in them */
const STRUCTURAL = new Set(["S", "V", "C", "P", "F", "L", "R"]);
const IDS = new Set(["s", "t", "c", "d", "n"]);

test("property: a seeded value in any field that can carry data never survives a masked or code exposure; classifier hits never survive at all", () => {
  const secret = fc.stringMatching(/^[a-z0-9]{8,16}$/).map((s) => `${s}#x`);
  fc.assert(
    fc.property(
      secret,
      // addresses of the shape the email classifier knows (its own tests cover what that shape is)
      fc.stringMatching(/^[a-z0-9][a-z0-9._%+-]{0,11}@[a-z0-9]{1,10}\.[a-z]{2,6}$/),
      fc.constantFrom<ExposureLevel>("clean", "masked", "code"),
      fc.uniqueArray(fc.constantFrom(...FIELD_CODES), { minLength: 1 }),
      fc.array(fc.string(), { minLength: FIELD_CODES.length, maxLength: FIELD_CODES.length }),
      (seed, email, level, codes, filler) => {
        const fields: Record<string, string> = {};
        codes.forEach((k, i) => {
          // the seeded value goes where user code or the server's message can put one
          const carries = !STRUCTURAL.has(k) && !(level === "masked" && IDS.has(k));
          fields[k] = (carries ? `${filler[i]} ${seed} ` : filler[i]!) + (i % 2 ? ` <${email}>` : "");
        });
        const out = screenMessageFields(fields, "error", exposure(level), scan) ?? fields;
        const all = Object.values(out).join("\u0000");
        if (level !== "clean") assert.ok(!all.includes(seed), `${seed} survived: ${JSON.stringify(out)}`);
        assert.ok(!all.includes(email), `${email} survived: ${JSON.stringify(out)}`);
        if (level !== "clean") {
          assert.ok(out.M?.startsWith("sluice withheld"), "the message says why");
          if (fields.C !== undefined) assert.equal(out.C, /^[0-9A-Z]{5}$/.test(fields.C) ? fields.C : "XX000", "SQLSTATE kept");
          for (const k of Object.keys(out)) assert.ok(STRUCTURAL.has(k) || IDS.has(k) || k === "M" || k === "D", `field ${k} passed`);
        }
      },
    ),
    { numRuns: 500 },
  );
});
