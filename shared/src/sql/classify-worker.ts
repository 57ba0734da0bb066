/**
 * The entry point of a classifier worker thread (classifier-pool.ts): classifySql for each message,
 * on a parser of the worker's own. A worker is only ever given one statement at a time, so a
 * statement that takes too long holds nothing but itself: the pool terminates the thread and makes
 * another. `workerData.parserModule` is the parent's compiled parser module, `workerData.annotator`
 * the URL of the node's StatementAnnotator module, if any. Messages: in `{ id, sql }`, out `{ id, result: Classification }`; `{ ready: true }` once
 * the parser is loaded.
 */
import { parentPort, workerData } from "node:worker_threads";
import { classifySql, loadSqlParser } from "./classify-sql.js";
import { loadParser, useCompiledParserModule } from "./sql-parser.js";
import type { Classification, StatementAnnotator } from "./statement-info.js";

export interface ClassifyRequest {
  id: number;
  sql: string;
}

export interface ClassifyReply {
  id: number;
  result: Classification;
}

const port = parentPort;
if (port) {
  // the parent's compiled parser module (classifier-pool.ts): instances of it take milliseconds,
  // compiling the wasm again would take most of the worker's start
  const given = (workerData as { parserModule?: object } | null)?.parserModule;
  if (given) useCompiledParserModule(given);
  await loadSqlParser();
  const parser = await loadParser();
  // the node's statement annotator (classifier-pool.ts `annotator`), run on the tree parsed here
  const annotatorUrl = (workerData as { annotator?: string } | null)?.annotator;
  const annotate = annotatorUrl ? ((await import(annotatorUrl)) as { annotateStatement: StatementAnnotator }).annotateStatement : undefined;
  port.on("message", (m: ClassifyRequest) => {
    void (async () => {
      // after a statement retired an instance, the next one waits for its replacement instead of
      // being denied as "restarting" (between messages the worker is idle, so this is quick)
      await parser.ensureSpare();
      let result: Classification;
      try {
        result = classifySql(m.sql, parser, annotate);
      } catch (e) {
        result = { ok: false, error: `statement cannot be classified: ${(e as Error).message}` };
      }
      port.postMessage({ id: m.id, result } satisfies ClassifyReply);
    })();
  });
  port.postMessage({ ready: true });
}
