import { Counter } from "@sluice/shared/metrics";
import type { ControlPlaneComponent } from "../control-plane.js";
import { ApprovalNotifier } from "./approval-notifier.js";

/** Approval webhooks (see ApprovalNotifier); every replica runs it, JetStream gives each event to one. */
export const notificationsComponent: ControlPlaneComponent = {
  name: "notifications",
  async start(ctx) {
    const logger = ctx.logger.child({ component: "notifications" });
    const attempts = new Counter({
      name: "sluice_approval_webhook_attempts_total",
      help: "approval webhook attempts by webhook and outcome (delivered, retry, give-up)",
      labelNames: ["webhook", "outcome"],
      registers: [ctx.metrics],
    });
    const notifier = new ApprovalNotifier({
      nc: ctx.nc,
      names: ctx.names,
      store: ctx.store,
      snapshots: ctx.kv.snapshots,
      logger,
      delivery: { onAttempt: (webhook, outcome) => attempts.inc({ webhook, outcome }) },
    });
    await notifier.start();
    return { stop: () => notifier.stop(), api: notifier };
  },
};
