import test from "node:test";
import assert from "node:assert/strict";
import { locatePointer, formatProblem } from "./bundle-text.js";

const text = `issuers: []
resources:
  - name: orders
    upstream:
      host: db
      password: env:PW
policies:
  - name: p
    allow: [read, reed]
`;

test("a JSON pointer maps to the line and column of its node", () => {
  assert.deepEqual(locatePointer(text, "/resources/0/upstream/password"), { line: 6, column: 17 });
  assert.deepEqual(locatePointer(text, "/policies/0/allow/1"), { line: 9, column: 19 });
  assert.deepEqual(locatePointer(text, "/resources/0/name"), { line: 3, column: 11 });
});

test("a pointer to something absent falls back to its closest existing ancestor", () => {
  assert.deepEqual(locatePointer(text, "/resources/0/upstream/port"), { line: 5, column: 7 });
  assert.deepEqual(locatePointer(text, ""), { line: 1, column: 1 });
});

test("a problem prints as path:line:col: message", () => {
  assert.equal(formatProblem({ path: "a.yaml", line: 3, column: 4, pointer: "/x", message: "bad" }), "a.yaml:3:4: bad");
});
