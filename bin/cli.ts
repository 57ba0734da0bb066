/**
 * A thin dispatcher: `sluice <command> [sub] [flags]` loads `commands/<command>.ts` (`.js` when compiled) and calls its
 * `run`. Each command file is a client of a package's public entry point (admin commands talk to the
 * control plane's gRPC API). Exit codes (contract): 0 ok, 1 refused/failed with a one-line reason on
 * stderr, 2 usage error.
 *
 * Every start of a command pays for what it imports (issue 15: a CLI command in ≤ 300 ms): this file
 * imports only the help text statically; a command loads its own modules, and the error reporting
 * loads when there is an error to report.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import type { CommandModule } from "./lib/cli-kit.js";
import { topLevelHelp } from "./lib/command-index.js";

const here = dirname(fileURLToPath(import.meta.url));
const commandsDir = join(here, "commands");
// the commands are .ts beside the sources and .js beside the compiled output (dist/bin)
const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

function usage(): string {
  return topLevelHelp();
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(usage() + "\n");
    return cmd ? 0 : 2;
  }
  if (!/^[a-z][a-z-]*$/.test(cmd) || !existsSync(join(commandsDir, `${cmd}${ext}`))) {
    process.stderr.write(`sluice: unknown command ${JSON.stringify(cmd)}\n${usage()}\n`);
    return 2;
  }
  const mod = (await import(join(commandsDir, `${cmd}${ext}`))) as CommandModule;
  return await mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    const { UsageError, fail } = await import("./lib/cli-kit.js");
    if (err instanceof UsageError) {
      process.stderr.write(`sluice: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.exitCode = fail(err);
    }
  },
);
