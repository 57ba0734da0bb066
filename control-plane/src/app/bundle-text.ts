/**
 * Bundle text ⇄ Bundle for the application layer: a parser seam (the shared parser when present)
 * and the mapping of a domain problem's JSON pointer back to a line:column of the submitted text,
 * so problems found by the deciders are reported like the parser's own.
 */
import { LineCounter, parseDocument, stringify, isMap, isSeq, type Node } from "yaml";
import type { Bundle } from "@sluice/shared/policy";

/** A problem in a submitted document (same shape as sluice.v1.Problem). */
export interface LocatedProblem {
  path: string;
  line: number;
  column: number;
  pointer: string;
  message: string;
}

export interface ParsedBundle {
  bundle?: Bundle;
  problems: LocatedProblem[];
}

/** `amend`, when given, adds to the parsed document before validation (see PolicyAppOptions.amend). */
export type BundleParser = (text: string, path: string, amend?: (raw: Record<string, unknown>) => Record<string, unknown>) => ParsedBundle;

/** Formats a problem as the one line the CLI prints: `path:line:col: message`. */
export function formatProblem(p: LocatedProblem): string {
  return `${p.path}:${p.line}:${p.column}: ${p.message}`;
}

function unescapePointer(t: string): string {
  return t.replace(/~1/g, "/").replace(/~0/g, "~");
}

/** line:column (1-based) of the node a JSON pointer names, or of its closest existing ancestor. */
export function locatePointer(text: string, pointer: string): { line: number; column: number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  let node: unknown = doc.contents;
  let best: Node | undefined = (doc.contents as Node | null) ?? undefined;
  const parts = pointer.split("/").slice(1).map(unescapePointer);
  for (const part of parts) {
    if (isMap(node)) {
      const pair = node.items.find((it) => {
        const k = it.key as { value?: unknown } | null;
        return k !== null && typeof k === "object" && String(k.value) === part;
      });
      if (!pair) break;
      node = pair.value;
      // for a scalar value point at the key's line when the value has no range (e.g. empty)
      best = ((pair.value as Node | null)?.range ? pair.value : pair.key) as Node;
    } else if (isSeq(node)) {
      const item = node.items[Number(part)];
      if (item === undefined) break;
      node = item;
      best = item as Node;
    } else break;
  }
  const offset = best?.range?.[0] ?? 0;
  const pos = lc.linePos(offset);
  return { line: pos.line, column: pos.col };
}

/** Renders a bundle as YAML for Get and for line diffs (stable key order: the order it was applied with). */
export function bundleYaml(bundle: Bundle): string {
  return stringify(bundle, { lineWidth: 0 });
}
