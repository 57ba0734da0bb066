#!/usr/bin/env node
// Builds the console's web assets (web/dist, served by the control plane under /console/) when they
// are missing or older than their sources. npm test and scripts/run-demo.sh call it, so a fresh clone
// serves the console without a separate step; `npm run build` builds unconditionally.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const web = new URL("../web/", import.meta.url).pathname;
const built = join(web, "dist", "index.html");

function newest(p) {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(p).map((n) => newest(join(p, n))));
}

const sources = ["src", "index.html", "vite.config.ts", "package.json"].map((n) => join(web, n)).filter(existsSync);
if (existsSync(built) && statSync(built).mtimeMs >= Math.max(...sources.map(newest))) process.exit(0);
const r = spawnSync("npm", ["run", "build", "-w", "web", "--silent"], { stdio: ["ignore", "ignore", "inherit"], cwd: join(web, "..") });
if (r.status !== 0) {
  console.error("build-web: the console build failed (npm run build -w web)");
  process.exit(r.status ?? 1);
}
