#!/usr/bin/env node
// Regenerates proto/src/gen from proto/sluice/v1/*.proto with buf + the local ts-proto plugin.
// `--check` regenerates into a temporary folder and fails when the committed code is stale.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, cpSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { tmpdir } from "node:os";

const root = new URL("..", import.meta.url).pathname;
const protoDir = join(root, "proto");
const genDir = join(protoDir, "src", "gen");
const check = process.argv.includes("--check");
const buf = join(root, "node_modules", ".bin", "buf");

function files(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) files(p, out);
    else out.push(p);
  }
  return out;
}

const work = mkdtempSync(join(tmpdir(), "sluice-gen-"));
try {
  cpSync(join(protoDir, "sluice"), join(work, "sluice"), { recursive: true });
  cpSync(join(protoDir, "buf.yaml"), join(work, "buf.yaml"));
  const genCfg = readFileSync(join(protoDir, "buf.gen.yaml"), "utf8").replace(
    "../node_modules/.bin/protoc-gen-ts_proto",
    join(root, "node_modules", ".bin", "protoc-gen-ts_proto"),
  );
  const r = spawnSync(buf, ["generate", "--template", genCfg], { cwd: work, stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    console.error("buf generate failed");
    process.exit(1);
  }
  const outDir = join(work, "src", "gen");
  const fresh = new Map(files(outDir).map((f) => [relative(outDir, f), readFileSync(f, "utf8")]));
  if (check) {
    const committed = new Map(files(genDir).map((f) => [relative(genDir, f), readFileSync(f, "utf8")]));
    const stale = [];
    for (const [k, v] of fresh) if (committed.get(k) !== v) stale.push(k);
    for (const k of committed.keys()) if (!fresh.has(k)) stale.push(k);
    if (stale.length) {
      console.error(`generated code is stale (run npm run gen): ${stale.join(", ")}`);
      process.exit(1);
    }
    console.error(`proto: generated code is up to date (${fresh.size} files)`);
  } else {
    rmSync(genDir, { recursive: true, force: true });
    cpSync(outDir, genDir, { recursive: true });
    console.error(`proto: generated ${fresh.size} files into proto/src/gen`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
