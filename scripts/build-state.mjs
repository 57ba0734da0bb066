// Whether dist/ (the compiled JavaScript of `npm run build`) is current with the TypeScript sources.
// Node built-ins only: bin/sluice.js asks this at every start, so it must cost a few milliseconds.
//
// The build writes dist/build-info.json last, with the time it started and the list of sources it
// compiled. dist is current when that file exists, the same sources are there, and none of them
// (nor a package.json or tsconfig that shapes the output) changed after the build started. Anything
// else, including a build still running (it removes the file first) or one that failed, is stale:
// the caller then runs the sources, never old output.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** What is compiled: every non-test .ts file under these (relative to the repository root). */
export const SOURCE_ROOTS = ["proto/src", "shared/src", "data-plane/src", "control-plane/src", "bin", "web/assets.ts"];
/** The packages dist/node_modules/@sluice/ holds, by source directory. */
export const PACKAGES = ["proto", "shared", "data-plane", "control-plane", "web"];
/** Files that shape the output without being sources. */
export const BUILD_INPUTS = [
  "package.json",
  "tsconfig.base.json",
  "tsconfig.build.base.json",
  "tsconfig.build.json",
  "bin/tsconfig.build.json",
  ...PACKAGES.flatMap((p) => [`${p}/package.json`, `${p}/tsconfig.build.json`]),
];

export const BUILD_INFO = "dist/build-info.json";

const isSource = (name) => name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".d.ts");

/** The sources, relative to root, sorted; with the newest modification time among them. */
export function listSources(root) {
  const files = [];
  let newest = 0;
  const visit = (rel) => {
    const st = statSync(join(root, rel), { throwIfNoEntry: false });
    if (!st) return;
    if (!st.isDirectory()) {
      files.push(rel);
      newest = Math.max(newest, st.mtimeMs);
      return;
    }
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && !e.name.startsWith(".")) visit(`${rel}/${e.name}`);
      } else if (isSource(e.name)) visit(`${rel}/${e.name}`);
    }
  };
  for (const r of SOURCE_ROOTS) visit(r);
  for (const f of BUILD_INPUTS) {
    const st = statSync(join(root, f), { throwIfNoEntry: false });
    if (st) newest = Math.max(newest, st.mtimeMs);
  }
  files.sort();
  return { files, newest };
}

/** Why dist is not current (a short phrase), or null when it is. */
export function staleReason(root) {
  let info;
  try {
    info = JSON.parse(readFileSync(join(root, BUILD_INFO), "utf8"));
  } catch {
    return "not built";
  }
  const { files, newest } = listSources(root);
  if (!Array.isArray(info.sources) || info.sources.length !== files.length || info.sources.some((f, i) => f !== files[i])) return "sources added or removed";
  if (newest > info.startedAtMs) return "sources changed";
  return null;
}
