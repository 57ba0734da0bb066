/**
 * `sluice --help` and every command's help, against each other, the README's command table and
 * every `sluice …` written in README.md, docs/ and examples/: a command named anywhere exists, its
 * subcommands and flags are in its --help, and every command is in the top-level help and the README.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { COMMANDS } from "../../bin/lib/command-index.js";
import { repoRoot, runSluice } from "../lib/run-sluice.js";

const commandFiles = readdirSync(join(repoRoot, "bin/commands")).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts")).map((f) => f.slice(0, -3)).sort();

/** Words of a synopsis or usage that must appear in the command's help: subcommands and flags. */
function mustAppear(synopsis: string): string[] {
  return synopsis
    .split(/[\s|[\]]+/)
    .map((w) => w.replace(/=.*$/, "").replace(/[.…,]+$/, ""))
    .filter((w) => /^--[a-z][a-z-]*$/.test(w) || /^[a-z][a-z-]+$/.test(w));
}

/** `sluice …` command lines in the code of a markdown or YAML file (fenced blocks, inline code, run: lines). */
function mentions(text: string, file: string): Array<{ where: string; words: string[] }> {
  const code = file.endsWith(".md") ? [...text.matchAll(/```[^\n]*\n([\s\S]*?)```|`([^`\n]+)`/g)].map((m) => m[1] ?? m[2]!) : [text];
  const out: Array<{ where: string; words: string[] }> = [];
  for (const chunk of code) {
    for (const line of chunk.replace(/\\\n/g, " ").split("\n")) {
      // YAML: the shell of run:/script: lines, not step names or comments
      if (!file.endsWith(".md") && /^\s*(?:#|-?\s*name:)/.test(line)) continue;
      for (const m of line.matchAll(/(?:^|[\s("$])sluice ((?:[^|;&)`"'<>#]|"[^"]*")+)/g)) {
        const words = m[1]!.trim().split(/\s+/);
        if (!/^[a-z][a-z-]*$/.test(words[0] ?? "")) continue;
        out.push({ where: `${file}: ${line.trim().slice(0, 100)}`, words });
      }
    }
  }
  return out;
}

function filesUnder(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, exts));
    else if (exts.some((e) => name.endsWith(e))) out.push(p);
  }
  return out;
}

test("sluice --help and every command's --help agree with each other, the README and the docs", { timeout: 120_000 }, async () => {
  // the index is the commands
  assert.deepEqual([...COMMANDS.map((c) => c.name)].sort(), commandFiles, "bin/lib/command-index.ts lists exactly bin/commands/*");

  const top = await runSluice(["--help"]);
  assert.equal(top.code, 0);
  for (const c of COMMANDS) assert.ok(top.stdout.includes(`sluice ${c.name} ${c.synopsis}`), `sluice --help shows ${c.name}'s synopsis`);
  assert.equal((await runSluice([])).code, 2, "no command is a usage error");
  const unknown = await runSluice(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);

  // each command's own help (and policy simulate's), a few at a time
  const helps = new Map<string, string>();
  const keys = [...COMMANDS.map((c) => [c.name]), ["policy", "simulate"]];
  for (let i = 0; i < keys.length; i += 4) {
    await Promise.all(
      keys.slice(i, i + 4).map(async (k) => {
        const r = await runSluice([...k, "--help"]);
        assert.equal(r.code, 0, `sluice ${k.join(" ")} --help exits 0: ${r.stderr}`);
        assert.match(r.stdout, /^usage:/, `sluice ${k.join(" ")} --help starts with usage:`);
        helps.set(k.join(" "), r.stdout);
      }),
    );
  }
  const helpOf = (cmd: string, sub?: string) => (helps.get(cmd) ?? "") + (sub ? helps.get(`${cmd} ${sub}`) ?? "" : "");
  for (const c of COMMANDS) {
    for (const w of mustAppear(c.synopsis)) assert.ok(helpOf(c.name).includes(w), `sluice ${c.name} --help mentions ${w} (from its synopsis)`);
  }

  // the README's command table: every command is there, and what it says is in the help
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const table = readme.slice(readme.indexOf("## The command"), readme.indexOf("\n## ", readme.indexOf("## The command") + 5));
  const rows = [...table.matchAll(/^\| (.*?) \| .* \|$/gm)].map((m) => m[1]!).filter((c) => c.startsWith("`"));
  const inReadme = new Set<string>();
  for (const cell of rows) {
    for (const m of cell.matchAll(/`((?:[^`\\]|\\.)+)`/g)) {
      const text = m[1]!.replace(/\\\|/g, "|");
      const [name, ...rest] = text.split(" ");
      assert.ok(commandFiles.includes(name!), `README table names command ${name}`);
      inReadme.add(name!);
      for (const w of mustAppear(rest.join(" "))) assert.ok(helpOf(name!, w === "simulate" ? "simulate" : undefined).includes(w) || helpOf(name!, "simulate").includes(w), `README: ${name} ${w} is in sluice ${name} --help`);
    }
  }
  assert.deepEqual([...inReadme].sort(), commandFiles, "the README's table has every command");

  // every `sluice …` in the README, docs/ and examples/
  const files = [join(repoRoot, "README.md"), ...filesUnder(join(repoRoot, "docs"), [".md"]), ...filesUnder(join(repoRoot, "examples"), [".md", ".yml", ".yaml"])];
  let checked = 0;
  for (const f of files) {
    for (const { where, words } of mentions(readFileSync(f, "utf8"), relative(repoRoot, f))) {
      const [cmd, maybeSub] = words;
      assert.ok(commandFiles.includes(cmd!), `${where}: "sluice ${cmd}" is a command`);
      const sub = maybeSub && /^[a-z][a-z-]*$/.test(maybeSub) && helps.has(`${cmd} ${maybeSub}`) ? maybeSub : undefined;
      for (const w of words.slice(1)) {
        const flag = /^--[a-z][a-z-]*/.exec(w)?.[0];
        if (flag) assert.ok(helpOf(cmd!, sub).includes(flag), `${where}: ${flag} is in sluice ${cmd}${sub ? ` ${sub}` : ""} --help`);
      }
      checked++;
    }
  }
  assert.ok(checked >= 30, `checked ${checked} sluice command lines in the README, docs and examples`);
});
