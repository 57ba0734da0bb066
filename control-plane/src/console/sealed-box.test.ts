import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { SealedBox, parseCookies, serializeCookie } from "./sealed-box.js";

test("sealed box: what one replica seals another with the same key opens; nothing else does", () => {
  const key = randomBytes(32);
  const a = new SealedBox(key);
  const b = new SealedBox(Buffer.from(key));
  const sealed = a.seal("session", { sub: "carol", groups: ["dba"] });
  assert.deepEqual(b.open("session", sealed), { sub: "carol", groups: ["dba"] });
  assert.ok(!sealed.includes("carol"), "the browser cannot read it");
  // another purpose, another key, a flipped bit, a truncation: all refused
  assert.equal(b.open("login", sealed), undefined);
  assert.equal(new SealedBox(randomBytes(32)).open("session", sealed), undefined);
  const raw = Buffer.from(sealed, "base64url");
  for (const i of [0, 12, 20, 28, raw.length - 1]) {
    const bad = Buffer.from(raw);
    bad[i] ^= 1;
    assert.equal(b.open("session", bad.toString("base64url")), undefined, `bit flipped at ${i}`);
  }
  assert.equal(b.open("session", sealed.slice(0, 30)), undefined);
  assert.equal(b.open("session", ""), undefined);
  assert.throws(() => new SealedBox(randomBytes(16)), /at least 32 bytes/);
});

test("sealed box: a CSRF token is bound to its session id and compared in constant time", () => {
  const box = new SealedBox(randomBytes(32));
  const t = box.csrfToken("sid-1");
  assert.equal(box.csrfValid("sid-1", t), true);
  assert.equal(box.csrfValid("sid-2", t), false);
  assert.equal(box.csrfValid("sid-1", t.slice(1)), false);
  assert.equal(box.csrfValid("sid-1", undefined), false);
});

test("cookies: HttpOnly and SameSite always, Secure when asked; the first of a repeated name wins", () => {
  assert.equal(serializeCookie("n", "v", { path: "/console", maxAgeSec: 60, secure: false, sameSite: "Strict" }), "n=v; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict");
  assert.match(serializeCookie("n", "v", { path: "/", maxAgeSec: 0, secure: true, sameSite: "Lax" }), /; HttpOnly; SameSite=Lax; Secure$/);
  const c = parseCookies("a=1; b=2; a=3; junk; =x");
  assert.deepEqual([...c], [["a", "1"], ["b", "2"]]);
});
