import { test } from "node:test";
import assert from "node:assert/strict";
import { bracketDepth } from "./pre-scan.js";

test("bracket depth counts nesting outside literals, identifiers and comments", () => {
  assert.equal(bracketDepth("select 1"), 0);
  assert.equal(bracketDepth("select f((1), a[2])"), 2);
  assert.equal(bracketDepth("select ((((1))))"), 4);
  assert.equal(bracketDepth("select '(((('"), 0);
  assert.equal(bracketDepth("select 'it''s ((('"), 0);
  assert.equal(bracketDepth("select E'\\' (((' , (1)"), 1, "E'' strings take backslash escapes");
  assert.equal(bracketDepth("select '\\' , (1)"), 1, "standard strings do not");
  assert.equal(bracketDepth('select "((("'), 0);
  assert.equal(bracketDepth("select 1 -- ((((\n, (2)"), 1);
  assert.equal(bracketDepth("select /* ( /* (( */ ((( */ (1)"), 1, "block comments nest");
  assert.equal(bracketDepth("select $$((($$, $tag$ ((( $tag$, (1)"), 1);
  assert.equal(bracketDepth("select $1, ($2)"), 1, "a parameter is not a dollar quote");
  assert.equal(bracketDepth("select a$b, (1)"), 1);
  assert.equal(bracketDepth("select " + "(".repeat(5000) + "1" + ")".repeat(5000)), 5000);
});
