/**
 * What every command carries besides its payload. Time and identity come IN with the command: the
 * domain never reads the clock or the network.
 */
export interface Actor {
  /** token `sub` */
  subject: string;
  /** issuer NAME from the trusted issuers (e.g. `dev`, `github`) */
  issuer: string;
  groups: string[];
}

export interface CommandMeta {
  /** client-chosen UUID: also the event id and the JetStream Nats-Msg-Id (de-duplication) */
  commandId: string;
  actor: Actor;
  now: Date;
}

/** A one-line label for an actor, as shown in history: `issuer:subject`. */
export function actorLabel(a: Actor): string {
  return `${a.issuer}:${a.subject}`;
}

/** A change of one named item of the bundle; decided by the item deciders, recorded in BundleApplied. */
export interface ItemChange {
  kind: "issuer" | "resource" | "policy" | "masking" | "group" | "webhook";
  name: string;
  op: "added" | "changed" | "removed";
}
