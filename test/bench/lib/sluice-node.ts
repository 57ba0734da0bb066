/**
 * Starts one sluice data-plane node as a child process for the benchmark, in front of the bench's
 * Postgres, with a static policy allowing reads (policy decided on every statement) and, when
 * `masked`, two masked columns of pgbench_accounts.
 */
import type { Target } from "./clients.js";

export interface SluiceNode {
  pid: number;
  target(name: string): Target;
  stop(): Promise<void>;
}

export interface SluiceNodeOptions {
  name: string;
  upstreamPort: number;
  database: string;
  cert: { certFile: string; keyFile: string };
  durability: "ack" | "async";
  masked: boolean;
}

export async function startSluiceNode(_o: SluiceNodeOptions): Promise<SluiceNode> {
  throw new Error("the data plane is not wired into the benchmark yet");
}
