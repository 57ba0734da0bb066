/** PolicyService over the policy application service; admin groups only. */
import type { PolicyServiceServer, PolicyChange } from "@sluice/proto";
import type { Logger } from "@sluice/shared/logging";
import type { ItemChange } from "../domain/command-meta.js";
import type { PolicyApp, RevisionView } from "../app/policy-app.js";
import { bundleYaml } from "../app/bundle-text.js";
import { requireAnyGroup, type Authenticator } from "./authenticate.js";
import { unary } from "./service-error.js";

export interface PolicyServiceDeps {
  app: PolicyApp;
  auth: Authenticator;
  adminGroups: () => readonly string[];
  logger: Logger;
  /** waits until the snapshot of `revision` is in KV (so data planes can see it) before answering Apply */
  awaitSnapshot?: (revision: number) => Promise<void>;
}

const changes = (c: ItemChange[]): PolicyChange[] => c.map((x) => ({ kind: x.kind, name: x.name, op: x.op }));

function revisionOut(v: RevisionView) {
  return {
    revision: v.revision,
    hash: v.hash,
    appliedBy: v.appliedBy,
    appliedAt: v.appliedAt,
    sourcePath: v.sourcePath,
    commandId: v.commandId,
    changes: changes(v.changes),
    diff: v.diff,
  };
}

export function policyService(d: PolicyServiceDeps): PolicyServiceServer {
  const base = (method: string) => ({
    auth: d.auth,
    logger: d.logger,
    method: `PolicyService/${method}`,
    authorize: (a: Parameters<typeof requireAnyGroup>[0]) => requireAnyGroup(a, d.adminGroups(), `PolicyService/${method}`),
  });
  return {
    apply: unary(base("Apply"), async (req, { actor }) => {
      const r = await d.app.apply({
        text: req.bundleYaml,
        sourcePath: req.sourcePath,
        expectedRevision: req.expectedRevision,
        commandId: req.commandId,
        actor,
      });
      if (d.awaitSnapshot && r.revision > 0) {
        // the event is recorded either way; a slow projection must not make the caller think it failed
        await d.awaitSnapshot(r.revision).catch((e: unknown) =>
          d.logger.warn({ revision: r.revision, reason: (e as Error).message }, "applied, but the snapshot is not in KV yet"),
        );
      }
      return { revision: r.revision, hash: r.hash, unchanged: r.unchanged, duplicate: r.duplicate, changes: changes(r.changes), diff: r.diff, notes: r.notes };
    }),
    get: unary(base("Get"), async () => {
      const v = await d.app.current();
      if (!v) return {};
      return {
        snapshot: {
          revision: v.revision,
          hash: v.hash,
          appliedBy: v.appliedBy,
          appliedAt: v.appliedAt,
          sourcePath: v.sourcePath,
          bundleYaml: bundleYaml(v.bundle),
          bundleJson: JSON.stringify(v.bundle),
        },
      };
    }),
    history: unary(base("History"), async (req) => ({ revisions: (await d.app.history(req.limit)).map(revisionOut) })),
    diff: unary(base("Diff"), async (req) => {
      const r = await d.app.diff(req.fromRevision, req.toRevision);
      return { fromRevision: r.from, toRevision: r.to, changes: changes(r.changes), diff: r.diff };
    }),
  };
}
