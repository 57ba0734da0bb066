/**
 * The policy application service: load the bundle aggregate from SLUICE_CONTROL → decide → append with
 * the aggregate's last stream sequence as expectation and the command id as Nats-Msg-Id. On a
 * concurrent append the command is re-decided against the fresh state a few times; a caller who named
 * an expected revision then gets ABORTED from the decider ("policy changed since revision N").
 */
import { SluiceError } from "@sluice/shared/errors";
import { uuidv7, type CloudEvent } from "@sluice/shared/events";
import { bundleWarnings, formatWarning, type Bundle } from "@sluice/shared/policy";
import type { Logger } from "@sluice/shared/logging";
import { actorLabel, type Actor, type ItemChange } from "../domain/command-meta.js";
import {
  POLICY_AGGREGATE,
  POLICY_BUNDLE_ID,
  bundleChanges,
  decidePolicy,
  foldPolicy,
  type BundleApplied,
  type PolicyEvent,
} from "../domain/policy/policy-decider.js";
import { unifiedDiff } from "../domain/policy/line-diff.js";
import { ConcurrencyConflict, type JetStreamEventStore, type StoredEvent } from "../infra/jetstream-event-store.js";
import { bundleYaml, locatePointer, type BundleParser, type LocatedProblem } from "./bundle-text.js";

export interface ApplyInput {
  text: string;
  sourcePath: string;
  /** 0: on top of whatever is current */
  expectedRevision: number;
  /** UUID; generated when empty */
  commandId?: string;
  actor: Actor;
}

export interface ApplyResult {
  revision: number;
  hash: string;
  unchanged: boolean;
  duplicate: boolean;
  changes: ItemChange[];
  diff: string;
  /** what the composing process added to the submitted bundle (see PolicyAppOptions.amend), and warnings about it (`warning: …`), one line each */
  notes: string[];
}

/**
 * Adds what a composing process keeps in every bundle to a submitted document, before it is
 * validated (`sluice dev` keeps its issuer and resource unless the file defines them), and says
 * what it added. Pure; it sees the document as parsed, so it must not assume it is valid.
 */
export type BundleAmender = (raw: Record<string, unknown>) => { bundle: Record<string, unknown>; notes: string[] };

export interface RevisionView {
  revision: number;
  hash: string;
  appliedBy: string;
  appliedAt: string;
  sourcePath: string;
  commandId: string;
  changes: ItemChange[];
  diff: string;
  bundle: Bundle;
}

export interface PolicyAppOptions {
  store: JetStreamEventStore;
  parse: BundleParser;
  logger: Logger;
  now?: () => Date;
  /** attempts on a concurrent append before giving up (default 5) */
  maxAttempts?: number;
  /** applied to every submitted bundle before it is decided */
  amend?: BundleAmender;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class PolicyApp {
  private readonly now: () => Date;
  private readonly maxAttempts: number;

  constructor(private readonly o: PolicyAppOptions) {
    this.now = o.now ?? (() => new Date());
    this.maxAttempts = o.maxAttempts ?? 5;
  }

  private load() {
    return this.o.store.read<PolicyEvent>(POLICY_AGGREGATE, POLICY_BUNDLE_ID);
  }

  async apply(input: ApplyInput): Promise<ApplyResult> {
    const sourcePath = input.sourcePath || "<request>";
    const commandId = input.commandId || uuidv7(this.now().getTime());
    if (!UUID.test(commandId)) throw new SluiceError("invalid_argument", "command id must be a UUID");
    let notes: string[] = [];
    const amend = this.o.amend;
    const parsed = this.o.parse(input.text, sourcePath, amend && ((raw) => {
      const r = amend(raw);
      notes = r.notes;
      return r.bundle;
    }));
    if (parsed.problems.length || !parsed.bundle) throw invalid(parsed.problems.length ? parsed.problems : [{ path: sourcePath, line: 1, column: 1, pointer: "", message: "empty policy document" }]);
    const bundle = parsed.bundle;
    // a valid bundle may still say something that does nothing: said, never refused
    notes = [...notes, ...bundleWarnings(bundle).map(formatWarning)];

    for (let attempt = 1; ; attempt++) {
      const stream = await this.load();
      const state = foldPolicy(stream.events.map((e) => e.event));
      const previous = stream.events.at(-1);
      const seen = stream.events.find((e) => e.event.commandId === commandId);
      if (seen) return { ...this.resultOf(seen, stream.events, { duplicate: true }), notes };
      let events: PolicyEvent[];
      try {
        events = decidePolicy(
          { type: "ApplyBundle", bundle, expectedRevision: input.expectedRevision, sourcePath, meta: { commandId, actor: input.actor, now: this.now() } },
          state,
        );
      } catch (e) {
        if (SluiceError.is(e, "invalid_argument")) throw this.locate(e, input.text, sourcePath);
        throw e;
      }
      const ev = events[0];
      if (!ev) {
        return { revision: state.revision, hash: state.hash, unchanged: true, duplicate: false, changes: [], diff: "", notes };
      }
      try {
        const r = await this.o.store.append(POLICY_AGGREGATE, POLICY_BUNDLE_ID, ev, {
          expectedLastStreamSeq: stream.lastStreamSeq,
          id: commandId,
          time: new Date(ev.appliedAt),
          previous: previous?.cloudEvent as CloudEvent | undefined,
          policyRev: ev.revision,
        });
        if (r.duplicate) {
          // the same command raced itself (re-sent while the first was in flight): report the original
          const again = await this.load();
          const orig = again.events.find((e) => e.event.commandId === commandId);
          if (orig) return { ...this.resultOf(orig, again.events, { duplicate: true }), notes };
          throw new SluiceError("internal", "duplicate command but its event is not on the aggregate");
        }
        this.o.logger.info(
          { revision: ev.revision, actor: actorLabel(ev.actor), changes: ev.changes.length, commandId, streamSeq: r.streamSeq },
          "policy bundle applied",
        );
        return {
          revision: ev.revision,
          hash: ev.hash,
          unchanged: false,
          duplicate: false,
          changes: ev.changes,
          diff: diffBetween(state.bundle, ev.bundle, state.revision, ev.revision),
          notes,
        };
      } catch (e) {
        if (!(e instanceof ConcurrencyConflict)) throw e;
        this.o.logger.debug({ attempt, commandId }, "policy changed concurrently; re-deciding");
        if (attempt >= this.maxAttempts) {
          throw new SluiceError("aborted", `policy changed concurrently ${attempt} times; re-run with the current revision`);
        }
      }
    }
  }

  private resultOf(se: StoredEvent<PolicyEvent>, all: StoredEvent<PolicyEvent>[], o: { duplicate: boolean }): Omit<ApplyResult, "notes"> {
    const ev = se.event;
    const prev = all.find((e) => e.event.revision === ev.revision - 1)?.event;
    return {
      revision: ev.revision,
      hash: ev.hash,
      unchanged: o.duplicate,
      duplicate: o.duplicate,
      changes: ev.changes,
      diff: diffBetween(prev?.bundle ?? null, ev.bundle, ev.revision - 1, ev.revision),
    };
  }

  private locate(e: SluiceError, text: string, path: string): SluiceError {
    const d = e.details as { problems?: { pointer: string; message: string }[] } | undefined;
    const problems: LocatedProblem[] = (d?.problems ?? [{ pointer: "", message: e.message }]).map((p) => ({
      path,
      ...locatePointer(text, p.pointer),
      pointer: p.pointer,
      message: p.message,
    }));
    return invalid(problems);
  }

  /** The current state: undefined when nothing was ever applied. */
  async current(): Promise<Omit<RevisionView, "diff"> | undefined> {
    // BundleApplied carries the whole bundle: the last event alone is the current state
    const last = await this.o.store.last<PolicyEvent>(POLICY_AGGREGATE, POLICY_BUNDLE_ID);
    if (!last) return undefined;
    return summary(last.event);
  }

  /** Every revision, oldest first (the last `limit` when limit > 0). */
  async history(limit = 0): Promise<RevisionView[]> {
    const evs = (await this.load()).events.map((e) => e.event);
    const out = evs.map((e, i) => view(e, evs[i - 1]));
    return limit > 0 ? out.slice(-limit) : out;
  }

  /** Difference between two revisions; to = 0 → current, from = 0 → the one before `to`. */
  async diff(from: number, to: number): Promise<{ from: number; to: number; changes: ItemChange[]; diff: string }> {
    const evs = (await this.load()).events.map((e) => e.event);
    const current = evs.at(-1)?.revision ?? 0;
    const t = to || current;
    const f = from || Math.max(0, t - 1);
    for (const r of [f, t]) {
      if (r < 0 || r > current) throw new SluiceError("not_found", `no revision ${r} (current is ${current})`);
    }
    const bundleAt = (r: number): Bundle | null => (r === 0 ? null : evs.find((e) => e.revision === r)!.bundle);
    const a = bundleAt(f);
    const b = bundleAt(t);
    return { from: f, to: t, changes: bundleChanges(a, b), diff: diffBetween(a, b, f, t) };
  }
}

function view(ev: BundleApplied, prev: BundleApplied | undefined): RevisionView {
  return { ...summary(ev), diff: diffBetween(prev?.bundle ?? null, ev.bundle, prev?.revision ?? 0, ev.revision) };
}


function summary(ev: BundleApplied): Omit<RevisionView, "diff"> {
  return {
    revision: ev.revision,
    hash: ev.hash,
    appliedBy: actorLabel(ev.actor),
    appliedAt: ev.appliedAt,
    sourcePath: ev.sourcePath,
    commandId: ev.commandId,
    changes: ev.changes,
    bundle: ev.bundle,
  };
}

export function diffBetween(a: Bundle | null, b: Bundle | null, fromRev: number, toRev: number): string {
  return unifiedDiff(a ? bundleYaml(a) : "", b ? bundleYaml(b) : "", { fromLabel: `revision ${fromRev}`, toLabel: `revision ${toRev}` });
}

/** invalid_argument with located problems; the message is the first problem as one line. */
export function invalid(problems: LocatedProblem[]): SluiceError {
  const p = problems[0]!;
  return new SluiceError("invalid_argument", `${p.path}:${p.line}:${p.column}: ${p.message}`, { problems });
}
