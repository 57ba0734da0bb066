import assert from "node:assert/strict";
import { SluiceError, type ErrorCode } from "@sluice/shared/errors";

/** Given/when/then over any decider: `given(events).when(command).then(events)` or `.thenThrows(code)`. */
export function specFor<C, E, S>(d: { decide(c: C, s: S): E[]; evolve(s: S, e: E): S; initial(): S }) {
  return {
    given(events: E[]) {
      const state = events.reduce(d.evolve, d.initial());
      return {
        when(cmd: C) {
          const run = () => d.decide(cmd, state);
          return {
            then(expected: E[] | ((events: E[]) => void)) {
              const got = run();
              if (typeof expected === "function") expected(got);
              else assert.deepEqual(got, expected);
            },
            thenThrows(code: ErrorCode, message?: RegExp) {
              assert.throws(run, (e: unknown) => {
                assert.ok(e instanceof SluiceError, `expected SluiceError, got ${String(e)}`);
                assert.equal(e.code, code);
                if (message) assert.match(e.message, message);
                return true;
              });
            },
          };
        },
      };
    },
  };
}
