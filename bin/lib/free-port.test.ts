import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { freePort } from "./free-port.js";

test("freePort: a port below the ephemeral range that the caller can bind", async () => {
  const port = await freePort();
  assert.ok(port >= 20000 && port < 32768, `port ${port}`);
  const srv = createServer();
  await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
  await new Promise((r) => srv.close(r));
});

test("freePort: a port held by someone else is not handed out", async () => {
  const held = await Promise.all(Array.from({ length: 20 }, async () => {
    const srv = createServer();
    const port = await freePort();
    await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
    return { srv, port };
  }).map((p) => p.catch(() => undefined)));
  const ports = held.filter((h) => h !== undefined).map((h) => h!.port);
  for (let i = 0; i < 20; i++) assert.ok(!ports.includes(await freePort()), "a held port was handed out");
  for (const h of held) if (h) await new Promise((r) => h.srv.close(r));
});
