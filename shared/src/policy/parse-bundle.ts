/**
 * Parses a policy bundle from YAML text with source positions, so every problem names the file, line
 * and column (`orders.yaml:12:7: unknown statement class "reed" …`). `parseBundle` is pure; only
 * `parseBundleFile` reads a file.
 */
import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node } from "yaml";
import type { Bundle } from "./bundle.js";
import { normalizeBundle, toPointer, validateBundle, type Locator, type Problem } from "./validate-bundle.js";

export interface ParsedBundle {
  /** present only when there are no problems; defaults filled (see normalizeBundle) */
  bundle?: Bundle;
  problems: Problem[];
}

/** A document node's child for one pointer segment (map key or list index), resolving aliases. */
function child(doc: Document, node: unknown, seg: string): { key?: Node; value?: Node } | undefined {
  if (isAlias(node)) node = node.resolve(doc);
  if (isMap(node)) {
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (k === seg) return { key: pair.key as Node, value: (pair.value ?? undefined) as Node | undefined };
    }
    return undefined;
  }
  if (isSeq(node)) {
    const i = Number(seg);
    const v = Number.isInteger(i) ? node.items[i] : undefined;
    return v === undefined || isPair(v) ? undefined : { value: (v ?? undefined) as Node | undefined };
  }
  return undefined;
}

function decodePointer(pointer: string): string[] {
  if (!pointer) return [];
  return pointer.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** Maps JSON pointers to 1-based line/column, falling back to the deepest node that exists. */
export function documentLocator(doc: Document, lc: LineCounter): Locator {
  const pos = (n: Node | undefined) => {
    const off = n?.range?.[0];
    if (off === undefined) return undefined;
    const p = lc.linePos(off);
    return { line: p.line, column: p.col };
  };
  return (pointer, key) => {
    let node: unknown = doc.contents;
    let best = pos((doc.contents ?? undefined) as Node | undefined) ?? { line: 1, column: 1 };
    const segs = decodePointer(pointer);
    for (let i = 0; i < segs.length; i++) {
      const c = child(doc, node, segs[i]!);
      if (!c) break;
      const last = i === segs.length - 1;
      const target = last && key && c.key ? c.key : (c.value ?? c.key);
      best = pos(target) ?? best;
      node = c.value;
      if (node === undefined) break;
    }
    return best;
  };
}

/** The pointer of the deepest node whose source range holds `offset` (for YAML syntax errors). */
function pointerAt(doc: Document, offset: number): string {
  const segs: (string | number)[] = [];
  let node: unknown = doc.contents;
  const holds = (n: unknown) => {
    const r = (n as Node | null)?.range;
    return !!r && offset >= r[0] && offset <= r[2];
  };
  for (;;) {
    let next: unknown;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (holds(pair.key) || holds(pair.value)) {
          segs.push(isScalar(pair.key) ? String(pair.key.value) : "?");
          next = holds(pair.value) ? pair.value : undefined;
          break;
        }
      }
    } else if (isSeq(node)) {
      node.items.forEach((it, i) => {
        if (next === undefined && holds(it)) {
          segs.push(i);
          next = it;
        }
      });
    }
    if (next === undefined) break;
    node = next;
  }
  return toPointer(segs);
}

/**
 * Parses and validates bundle YAML. Pure. `source` is the path reported in problems (e.g. the file
 * name, or `<stdin>`). YAML syntax errors (including duplicate keys) are problems too. `amend` may add
 * to the document (after the file's own items) before it is validated.
 */
export function parseBundle(text: string, source: string, amend?: (raw: Record<string, unknown>) => Record<string, unknown>): ParsedBundle {
  const lc = new LineCounter();
  // logLevel error: YAML warnings (e.g. collection keys) are not printed; validation reports what matters
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: false, logLevel: "error" });
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => {
        const p = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
        // first line only, without the "at line N, column M" suffix the position already carries
        let reason = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
        if (e.code === "MULTIPLE_DOCS") reason = "the file holds several YAML documents (---); a bundle is one document";
        return { path: source, line: p.line, column: p.col, pointer: pointerAt(doc, e.pos[0]), message: `YAML syntax error: ${reason}` };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return { problems: [{ path: source, line: 1, column: 1, pointer: "", message: `YAML error: ${(e as Error).message.split("\n")[0]}` }] };
  }
  // what a composing process keeps in every bundle (sluice dev: its issuer and resource) joins before
  // validation, so the file may refer to it; it is appended, so the file's own pointers stay located
  if (amend && raw !== null && typeof raw === "object" && !Array.isArray(raw)) raw = amend(raw as Record<string, unknown>);
  const problems = validateBundle(raw, { source, locate: documentLocator(doc, lc) });
  if (problems.length > 0) return { problems };
  return { bundle: normalizeBundle(raw as Record<string, unknown>), problems };
}

/**
 * Gives positions to problems found elsewhere (e.g. returned by the control plane, which saw only the
 * parsed bundle) by resolving their pointers in the YAML text they came from. Pure.
 */
export function locateProblems(problems: readonly Pick<Problem, "pointer" | "message">[], text: string, source: string): Problem[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, merge: false, logLevel: "error" });
  const locate = documentLocator(doc, lc);
  return problems.map((p) => {
    const pos = locate(p.pointer, /unknown key/.test(p.message)) ?? { line: 0, column: 0 };
    return { path: source, line: pos.line, column: pos.column, pointer: p.pointer, message: p.message };
  });
}

/** Reads and parses a bundle file; an unreadable file is a problem, not a throw. */
export async function parseBundleFile(path: string, amend?: (raw: Record<string, unknown>) => Record<string, unknown>): Promise<ParsedBundle> {
  // Imported lazily so this module stays free of I/O for the pure rooms that import it.
  const { readFile } = await import("node:fs/promises");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (e as Error).message;
    return { problems: [{ path, line: 0, column: 0, pointer: "", message: `cannot read the policy file: ${why}` }] };
  }
  return parseBundle(text, path, amend);
}
