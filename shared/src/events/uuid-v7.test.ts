import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { uuidv7, uuidv7Time } from "./uuid-v7.js";

test("UUIDv7 ids carry their millisecond, sort in creation order and keep the format, whatever the clock does (repeats, steps back)", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 48 - 2 ** 20 }), { minLength: 1, maxLength: 40 }), fc.array(fc.nat({ max: 3 }), { maxLength: 40 }), (starts, repeats) => {
      // a fresh process's state is not reachable here: start above anything earlier runs used
      let high = uuidv7Time(uuidv7());
      let prev = "";
      for (let i = 0; i < starts.length; i++) {
        const ms = Math.max(starts[i]!, high - 5);
        for (let r = 0; r <= (repeats[i] ?? 0); r++) {
          const id = uuidv7(ms);
          assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
          // the id's ms is the clock's, or the last id's when the clock did not move on (a counter that
          // ran out in one ms borrows the next)
          const t = uuidv7Time(id);
          assert.ok(t >= Math.max(high, ms) && t <= Math.max(high, ms) + 1, `${t} for ${ms} after ${high}`);
          high = t;
          if (prev) assert.ok(prev < id, `${prev} < ${id}`);
          prev = id;
        }
      }
    }),
  );
});

test("an id of a later millisecond than any before carries exactly it", () => {
  for (let i = 0; i < 50; i++) {
    const ms = uuidv7Time(uuidv7()) + 1 + i * 7;
    assert.equal(uuidv7Time(uuidv7(ms)), ms);
    assert.equal(uuidv7Time(uuidv7(ms)), ms); // the same millisecond again: its remembered prefix
  }
});
