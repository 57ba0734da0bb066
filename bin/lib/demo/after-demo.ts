/**
 * What the demo leaves on screen once it is done: where the stack is, and three commands to try from
 * another shell while it keeps running. Pure: values in, text out.
 */
import { DEMO_APPROVER, DEMO_PIPELINE_GROUP } from "./demo-policy.js";

export interface AfterDemo {
  port: number;
  resource: string;
  caFile: string;
  grpc: string;
  sessionId?: string;
}

export function afterDemo(a: AfterDemo): string {
  const conn = `host=127.0.0.1 port=${a.port} dbname=${a.resource} user=me sslmode=require`;
  return [
    "",
    "sluice dev: demo finished; the stack keeps running until Ctrl-C",
    `  Postgres (through sluice)  ${conn}   (TLS; CA ${a.caFile}; password: a token)`,
    `  control plane (gRPC)       ${a.grpc}   (every \`sluice\` command in another shell uses it)`,
    "",
    "Try, from another shell in this checkout:",
    `  PGPASSWORD=$(npx sluice token --sub me --groups ${DEMO_PIPELINE_GROUP}) psql "${conn}"   # be the pipeline: try TRUNCATE orders;`,
    "  npx sluice audit tail                       # every statement as it is recorded",
    a.sessionId
      ? `  npx sluice sessions show ${a.sessionId}   # the demo's session, decision by decision`
      : "  npx sluice sessions list                    # who connected, with which identity, what ran",
    `A held statement is approved by another identity: npx sluice approvals approve ID --token "$(npx sluice token --sub ${DEMO_APPROVER.sub} --groups ${DEMO_APPROVER.groups.join(",")})"`,
    "",
  ].join("\n");
}
