#!/usr/bin/env node
// The `sluice` command. Runs the compiled JavaScript (dist/, from `npm run build`) when it is
// current with the sources, and the TypeScript sources through tsx otherwise (a checkout not built
// yet, or edited since): never output older than the sources. SLUICE_RUN=source forces the sources.
// Installs run dist/bin/cli.js directly (deploy/systemd, deploy/Dockerfile).
import { staleReason } from "../scripts/build-state.mjs";

const root = new URL("..", import.meta.url).pathname;
const stale = process.env.SLUICE_RUN === "source" ? "SLUICE_RUN=source" : staleReason(root);
if (stale === null) {
  await import("../dist/bin/cli.js");
} else {
  let register;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    // an install without development dependencies has only dist/ to run
    process.stderr.write(`sluice: the compiled output is not current (${stale}) and tsx is not installed to run the sources: run npm run build\n`);
    process.exit(1);
  }
  register();
  await import("./cli.ts");
}
