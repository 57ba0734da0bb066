/**
 * Reliability: the data plane killed with SIGKILL under load (ack durability), and started again
 * on the same config. No clean stop, no flush: every statement a client saw succeed must be on the
 * stream all the same (ack: it was stored before it ran), each session's stored events a gap-free
 * beginning of its chain, and the restarted node serves the same clients again. A statement held
 * for approval at the moment of the kill must end recorded as cancelled and can never be approved
 * (and so never run) afterwards: the control plane cancels it once the restarted node's heartbeat
 * shows another process start (ApprovalCancelled on SLUICE_CONTROL). One whose client left before
 * the kill is cancelled by the node itself, on the control plane and in its session's audit chain.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionEventType, type CloudEvent } from "@sluice/shared/events";
import { APPROVAL_POLICY, approvalNotice, controlEventsOf } from "./lib/approvals.js";
import { budget } from "./lib/budget.js";
import { LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";

test("the data plane killed with SIGKILL under load and restarted (ack), with a statement held for approval", async (t) => {
  const r = new ScenarioReport(t, "data-plane-sigkill", "Data plane SIGKILL under load and restarted (ack)");
  try {
    const workers = budget(4, 16);
    const s = await startReliabilityStack(t, { label: "dpkill", durability: "ack", policies: [APPROVAL_POLICY] });
    await s.direct(LEDGER_DDL);
    const load = new Load(s, { workers, pauseMs: budget(5, 1), reconnectPauseMs: 100 }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);

    // a held statement whose client goes away first (a clean end of the session, before the kill)
    const left = await s.client({ sub: "repo:acme/deploy-left", groups: ["deployers"] });
    const leftIdP = approvalNotice(left, 30_000);
    const leftQuery = left.query("CREATE TABLE held_then_left (id int)").catch(() => undefined);
    const leftId = await leftIdP;
    await left.end().catch(() => undefined);
    await leftQuery;

    // a pipeline's DDL held for approval when the node dies
    const held = await s.client({ sub: "repo:acme/deploy", groups: ["deployers"] });
    const idP = approvalNotice(held, 30_000);
    const heldQuery = held.query("CREATE TABLE held_at_kill (id int)").then(() => "ran", (e: Error) => `failed: ${e.message}`);
    const approvalId = await idP;
    r.figure("approval request held at the kill", approvalId);

    r.inject(`SIGKILL of the data plane (pid ${s.dp.pid}) under a load of ${workers} sessions and one statement held for approval`);
    const killedAt = Date.now();
    await s.dp.kill("SIGKILL");
    r.figure("data plane ended by", String(s.dp.ended));
    const heldOutcome = await heldQuery;
    r.check("the held statement's client gets an error, not a result", heldOutcome.startsWith("failed"), heldOutcome);
    await sleep(budget(1000, 5000));

    r.inject("the data plane started again on the same config (same ports, node name and NATS)");
    const restartAt = Date.now();
    await s.dp.start();
    const readyAt = Date.now();
    r.figure("restart: start → /readyz 200 (ms)", readyAt - restartAt);
    const until = Date.now() + 60_000;
    while (load.firstAckAfter(readyAt).some((x) => x === undefined) && Date.now() < until) await sleep(100);
    const firsts = load.firstAckAfter(readyAt);
    const rec = firsts.every((x) => x !== undefined) ? Math.max(...(firsts as number[])) - readyAt : undefined;
    r.check("every session runs statements again through the restarted node", rec !== undefined);
    r.figure("recovery: node ready → every session succeeded again (ms)", rec ?? "never");
    r.figure("outage seen by clients: kill → every session succeeded again (ms)", rec !== undefined ? readyAt + rec - killedAt : "never");
    r.check("statements succeed after the restart", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);

    // the held statement, afterwards: an approver tries at once — refused, recorded cancelled, nothing ran.
    // A control plane that does not answer in time (its NATS requests time out on a loaded machine) is
    // asked again, as an operator would, and how often is reported with how fast it and NATS answer.
    const tries: string[] = [];
    const cli = async (args: string[], env?: Record<string, string>) => {
      for (let attempt = 1; ; attempt++) {
        const res = await s.cli(args, env);
        const slow = res.code !== 0 && /timeout|cannot reach|unavailable|deadline/i.test(res.stderr);
        if (!slow || attempt >= 4) {
          if (attempt > 1) tries.push(`${args.slice(0, 2).join(" ")}: ${attempt} tries`);
          return res;
        }
        const p = await s.probe();
        tries.push(`${args.slice(0, 2).join(" ")} try ${attempt}: ${res.stderr.trim()} (control plane /healthz ${p.controlPlaneHealthzMs} ms, NATS API ${p.natsApiMs} ms)`);
        await sleep(2000);
      }
    };
    const probe = await s.probe();
    r.figure("control plane /healthz and NATS API answer times before the approval checks (ms)", `${probe.controlPlaneHealthzMs} / ${probe.natsApiMs}`);
    const dbaToken = await s.token({ sub: "carol-dba", groups: ["dba"] });
    const approve = await cli(["approvals", "approve", approvalId, "--reason", "reliability: after the kill"], { SLUICE_TOKEN: dbaToken });
    r.figure("approve attempt after the restart", approve.code === 0 ? `accepted: ${approve.stdout.trim()}` : `refused (exit ${approve.code}): ${approve.stderr.trim()}`);
    r.check("an approver cannot approve the held request after the node died", approve.code === 1 && /was cancelled \(node_restarted/.test(approve.stderr), `exit ${approve.code}: ${approve.stderr.trim()}`);
    const shown = await cli(["approvals", "show", approvalId, "--json"]);
    const view = shown.code === 0 ? (JSON.parse(shown.stdout) as { status: string; reason?: string; decidedAt?: string; decided_at?: string }) : undefined;
    const status = view?.status ?? `show failed: ${shown.stderr.trim()}`;
    r.figure("approval request status afterwards", `${status}${view?.reason ? ` (${view.reason})` : ""}`);
    r.check("the held request is recorded as cancelled", status === "cancelled", status);
    const listed = await cli(["approvals", "list", "--all"]);
    const line = listed.stdout.split("\n").find((l) => l.includes(approvalId)) ?? "";
    r.check("the CLI list shows it cancelled", listed.code === 0 && /cancelled/.test(line), line.trim() || `exit ${listed.code}: ${listed.stderr.trim()}`);
    const control = await controlEventsOf(s, approvalId);
    r.figure("the request's events on SLUICE_CONTROL", control.map((e) => e.type.replace(/^dev\.sluice\.control\.approval\./, "").replace(/\.v1$/, "")).join(", "));
    const cancelledEv = control.find((e) => e.type.endsWith("approval_cancelled.v1"));
    r.check("the cancellation is recorded on the control stream by the control plane, and no grant", !!cancelledEv && !control.some((e) => e.type.endsWith("approval_granted.v1")) && (cancelledEv.data as { by?: { subject?: string } }).by?.subject === "control-plane");
    if (cancelledEv) r.figure("kill → request recorded cancelled (ms)", Date.parse(cancelledEv.time) - killedAt);
    const ran = (await s.direct("SELECT to_regclass('public.held_at_kill') IS NOT NULL AS present")).rows[0].present as boolean;
    r.check("the held statement never ran", !ran);

    // the one whose client left before the kill: recorded cancelled in its session, and on the control plane?
    const approveLeft = await cli(["approvals", "approve", leftId, "--reason", "reliability: client gone"], { SLUICE_TOKEN: dbaToken });
    const shownLeft = await cli(["approvals", "show", leftId, "--json"]);
    const statusLeft = shownLeft.code === 0 ? (JSON.parse(shownLeft.stdout) as { status: string }).status : `show failed: ${shownLeft.stderr.trim()}`;
    r.figure("held request whose client left before the kill: approve attempt", approveLeft.code === 0 ? "accepted" : `refused (exit ${approveLeft.code}): ${approveLeft.stderr.trim()}`);
    r.figure("held request whose client left before the kill: status afterwards", statusLeft);
    const leftRan = (await s.direct("SELECT to_regclass('public.held_then_left') IS NOT NULL AS present")).rows[0].present as boolean;
    r.check("the statement whose client left never ran", !leftRan);
    r.check("an approver cannot approve a held request whose client has left", approveLeft.code === 1 && /was cancelled \(client_left/.test(approveLeft.stderr), `exit ${approveLeft.code}: ${approveLeft.stderr.trim()}`);
    r.check("the request whose client left is cancelled by its node", statusLeft === "cancelled" && (await controlEventsOf(s, leftId)).some((e) => e.type.endsWith("approval_cancelled.v1") && (e.data as { by?: { subject?: string } }).by?.subject === "data-plane:dp-1"), statusLeft);

    r.figure("control plane calls asked again (it did not answer in time)", tries.length ? tries.join("; ") : "none");
    r.figure("data plane peak RSS after the restart (MiB)", s.dp.memory().peakMb);
    await load.stop();
    onlyErrors(r, load, ["connection: closed", "connection: ECONNREFUSED", "connection: ECONNRESET", "57P03"],
      "clients saw their connections close or be refused while the node was away, nothing else");
    r.check("control plane never exited", !!s.cp?.running && s.cp.starts === 1);
    await s.dp.stop(30_000);
    r.check("the restarted data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    // the held sessions' events, gathered in the same bounded pass over the stream
    const held_: CloudEvent[] = [];
    const { ev } = await recordEvidence(r, s, load, {
      wholeChains: true,
      visit: (e) => {
        if (e.type === SessionEventType["statement.allowed"] && !/held_/.test(JSON.stringify(e.data))) return;
        if (e.type.includes("statement.") && !e.type.includes("completed")) held_.push(e);
      },
    });
    r.figure("sessions on the stream without session.ended (ended by the kill)", ev.unended);

    // the held statement on the stream: requested, and never approved or run
    const stored = held_;
    const requested = stored.find((e) => e.type === SessionEventType["statement.approval_requested"] && JSON.stringify(e.data).includes(approvalId));
    const session: CloudEvent[] = requested ? stored.filter((e) => e.subject === requested.subject) : [];
    r.check("the approval request is on the stream, in the held session's chain", !!requested);
    const leftRequested = stored.find((e) => e.type === SessionEventType["statement.approval_requested"] && JSON.stringify(e.data).includes(leftId));
    const leftSession = leftRequested ? stored.filter((e) => e.subject === leftRequested.subject) : [];
    r.check("the held session whose client left records the request cancelled", leftSession.some((e) => e.type === SessionEventType["statement.rejected"] && (e.data as { reason?: string }).reason === "cancelled"));
    r.check(
      "the held session's stream never shows the statement approved or allowed",
      !session.some((e) => e.type === SessionEventType["statement.approved"] || (e.type === SessionEventType["statement.allowed"] && JSON.stringify(e.data).includes("held_at_kill"))),
    );
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});
