import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPrivateKey } from "node:crypto";
import { loadSigningKey, signingKeyFrom } from "./signing-key.js";

const here = fileURLToPath(new URL(".", import.meta.url));

test("an absent key is generated once; later loads read it", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-key-"));
  try {
    const file = join(dir, "keys", "sealer.pem");
    assert.throws(() => loadSigningKey(file), /does not exist/);
    const a = loadSigningKey(file, { generate: true });
    const b = loadSigningKey(file, { generate: true });
    assert.equal(a.keyId, b.keyId);
    assert.equal(readFileSync(`${file}.pub`, "utf8"), a.publicKeyPem);
    writeFileSync(join(dir, "bad.pem"), "-----BEGIN PRIVATE KEY-----\nnot a key\n");
    assert.throws(() => loadSigningKey(join(dir, "bad.pem")), /not a PEM private key/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("replicas generating the key at the same moment all end up with the one key on disk", { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-key-race-"));
  try {
    const file = join(dir, "sealer.pem");
    const go = join(dir, "go");
    // each child is ready first, then spins until the go file appears, so the loads coincide
    const script = `
      import { existsSync } from "node:fs";
      import { loadSigningKey } from ${JSON.stringify(join(here, "signing-key.ts"))};
      process.stdout.write("ready\\n");
      while (!existsSync(${JSON.stringify(go)})) {}
      process.stdout.write(loadSigningKey(${JSON.stringify(file)}, { generate: true }).keyId + "\\n");
    `;
    const children = Array.from({ length: 4 }, () => {
      const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      c.stdout.on("data", (d: Buffer) => (out += d.toString()));
      c.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const ready = new Promise<void>((resolve, reject) => {
        c.stdout.on("data", () => out.includes("ready") && resolve());
        c.once("exit", (code) => reject(new Error(`child exited with ${code}: ${err}`)));
      });
      const done = new Promise<string>((resolve, reject) =>
        c.once("exit", (code) => (code === 0 ? resolve(out.replace("ready\n", "").trim()) : reject(new Error(`child exited with ${code}: ${err}`)))),
      );
      return { ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    writeFileSync(go, "");
    const ids = await Promise.all(children.map((c) => c.done));
    const onDisk = signingKeyFrom(createPrivateKey(readFileSync(file))).keyId;
    assert.deepEqual(ids, ids.map(() => onDisk), "every replica signs with the key on disk");
    assert.ok(existsSync(`${file}.pub`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
