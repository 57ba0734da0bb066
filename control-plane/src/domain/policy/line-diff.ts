/**
 * A unified line diff (LCS based), enough to show what changed between two renderings of a bundle.
 * Pure. Bundles are small; past `maxCells` the diff degrades to "replace everything" rather than
 * spending quadratic time.
 */
export function unifiedDiff(a: string, b: string, opts: { fromLabel?: string; toLabel?: string; context?: number; maxCells?: number } = {}): string {
  if (a === b) return "";
  const A = splitLines(a);
  const B = splitLines(b);
  const ctx = opts.context ?? 3;
  const ops = (A.length + 1) * (B.length + 1) > (opts.maxCells ?? 4_000_000) ? replaceAll(A, B) : lcsOps(A, B);
  const out: string[] = [`--- ${opts.fromLabel ?? "a"}`, `+++ ${opts.toLabel ?? "b"}`];
  // group ops into hunks with `ctx` lines of context
  let i = 0;
  while (i < ops.length) {
    while (i < ops.length && ops[i]!.op === " ") i++;
    if (i >= ops.length) break;
    let start = Math.max(0, i - ctx);
    let end = i;
    // extend while changes are within 2*ctx of each other
    for (;;) {
      while (end < ops.length && ops[end]!.op !== " ") end++;
      let next = end;
      while (next < ops.length && ops[next]!.op === " ") next++;
      if (next < ops.length && next - end <= 2 * ctx) end = next;
      else break;
    }
    const stop = Math.min(ops.length, end + ctx);
    const hunk = ops.slice(start, stop);
    const aStart = hunk[0]!.ai;
    const bStart = hunk[0]!.bi;
    const aLen = hunk.filter((o) => o.op !== "+").length;
    const bLen = hunk.filter((o) => o.op !== "-").length;
    out.push(`@@ -${aLen ? aStart + 1 : aStart},${aLen} +${bLen ? bStart + 1 : bStart},${bLen} @@`);
    for (const o of hunk) out.push(o.op + o.line);
    i = stop;
    start = stop;
  }
  return out.join("\n") + "\n";
}

interface Op {
  op: " " | "-" | "+";
  line: string;
  /** index in a / b where this op sits */
  ai: number;
  bi: number;
}

function splitLines(s: string): string[] {
  if (s === "") return [];
  const l = s.split("\n");
  if (l[l.length - 1] === "") l.pop();
  return l;
}

function replaceAll(A: string[], B: string[]): Op[] {
  return [...A.map((line, i) => ({ op: "-" as const, line, ai: i, bi: 0 })), ...B.map((line, j) => ({ op: "+" as const, line, ai: A.length, bi: j }))];
}

function lcsOps(A: string[], B: string[]): Op[] {
  const n = A.length;
  const m = B.length;
  // L[i][j] = LCS length of A[i..] and B[j..], in one flat array
  const L = new Uint32Array((n + 1) * (m + 1));
  const w = m + 1;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      L[i * w + j] = A[i] === B[j] ? L[(i + 1) * w + j + 1]! + 1 : Math.max(L[(i + 1) * w + j]!, L[i * w + j + 1]!);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (A[i] === B[j]) {
      ops.push({ op: " ", line: A[i]!, ai: i, bi: j });
      i++;
      j++;
    } else if (L[(i + 1) * w + j]! >= L[i * w + j + 1]!) {
      ops.push({ op: "-", line: A[i]!, ai: i, bi: j });
      i++;
    } else {
      ops.push({ op: "+", line: B[j]!, ai: i, bi: j });
      j++;
    }
  }
  while (i < n) ops.push({ op: "-", line: A[i]!, ai: i++, bi: j });
  while (j < m) ops.push({ op: "+", line: B[j]!, ai: i, bi: j++ });
  return ops;
}
