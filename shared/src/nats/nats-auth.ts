/**
 * Decentralised NATS authentication for sluice (nats-server 2.9 "operator mode"): one operator, a
 * system account, and the `SLUICE` account whose scoped signing keys ARE the roles of
 * nats-permissions.ts. A user JWT signed with a role's key gets that role's permissions from the
 * server, templated with the user's own tags, so a new data-plane node needs a credentials file and
 * no change to any server's configuration (no hand-written user per node).
 *
 * The servers need only the public half: `serverConfig()` is the `operator` / `resolver` block every
 * server of every cluster includes (resolver MEMORY: the two account JWTs are preloaded; a revocation
 * or a new role template means re-issuing the account JWT and reloading the servers). The seeds stay
 * with whoever issues credentials (`sluice nats-auth`), never on a server or a node.
 */
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  fromSeed,
  newScopedSigner,
  type KeyPair,
  type SigningKey,
} from "@nats-io/jwt";
import { SluiceError } from "../errors/index.js";
import type { NatsNames } from "./nats-names.js";
import { NATS_ROLES, rolePermissions, roleTags, type NatsRole } from "./nats-permissions.js";

/**
 * One role's issuing key alone: enough to mint users of that role and nothing else (e.g. for a
 * data-plane pod that issues its own node credentials at start, deploy/kubernetes).
 */
export interface RoleSigner {
  role: NatsRole;
  accountPublicKey: string;
  seed: string;
}

/** Issues a user of `signer.role` with only that role's key (no operator or account seed needed). */
export async function issueWithRoleSigner(signer: RoleSigner, user: Omit<NatsUser, "role">): Promise<string> {
  const full: NatsUser = { ...user, role: signer.role };
  checkUser(full);
  const u = createUser();
  const exp = user.expiresInSec ? Math.floor(Date.now() / 1000) + user.expiresInSec : undefined;
  const jwt = await encodeUser(user.name, u, signer.accountPublicKey, { tags: roleTags(signer.role, full) }, { signer: keyFrom(signer.seed, `${signer.role} signing key`), scopedUser: true, ...(exp ? { exp } : {}) });
  return td.decode(fmtCreds(jwt, u));
}

function checkUser(user: NatsUser): void {
  if (!TOKEN.test(user.name)) throw new SluiceError("invalid_argument", `user name must match ${TOKEN.source}: ${JSON.stringify(user.name)}`);
  if (user.role === "data-plane") {
    // the tags become subject tokens of the role template: they must be tokens themselves
    for (const [k, v] of [["region", user.region], ["node", user.node]] as const) {
      if (!v || !TOKEN.test(v)) throw new SluiceError("invalid_argument", `a data-plane user needs --${k} matching ${TOKEN.source}`);
    }
  }
}

/** The secret half (nkey seeds). Whoever holds `signers[role]` can mint users of that role. */
export interface NatsAuthSeeds {
  operator: string;
  systemAccount: string;
  account: string;
  signers: Record<NatsRole, string>;
}

export interface NatsUser {
  role: NatsRole;
  /** user name; for data planes the node id (also its tag), for others e.g. `cp` or `auditor-acme` */
  name: string;
  region?: string;
  node?: string;
  /** the node's cancel number (nodeNumberFromId(node)); data planes only */
  cancel?: number;
  /** seconds until the credentials expire (default: never) */
  expiresInSec?: number;
}

export interface NatsAuth {
  readonly seeds: NatsAuthSeeds;
  readonly operatorJwt: string;
  readonly accountJwt: string;
  readonly accountPublicKey: string;
  readonly systemAccountJwt: string;
  readonly systemAccountPublicKey: string;
  /** the `operator`, `system_account`, `resolver` and `resolver_preload` lines of nats-server.conf */
  serverConfig(): string;
  /** one role's issuing key alone (see issueWithRoleSigner) */
  roleSigner(role: NatsRole): RoleSigner;
  /** a `.creds` file (user JWT + user seed) of a role */
  issueUser(user: NatsUser): Promise<string>;
  /** a `.creds` file of a system-account user (server monitoring, `nats server report`) */
  issueSystemUser(name: string): Promise<string>;
}

const TOKEN = /^[A-Za-z0-9_-]+$/;
const td = new TextDecoder();

function seedOf(kp: KeyPair): string {
  return td.decode(kp.getSeed());
}

function keyFrom(seed: string, what: string): KeyPair {
  try {
    return fromSeed(new TextEncoder().encode(seed));
  } catch (e) {
    throw new SluiceError("invalid_argument", `not an nkey seed: ${what}`, undefined, { cause: e });
  }
}

/**
 * Builds the operator, the accounts and the role signing keys from `seeds` (or new ones). The
 * account's role templates come from rolePermissions(names, role), so the same code that names the
 * subjects defines who may use them. `names` carries the prefix (tests use one per server).
 */
export async function createNatsAuth(names: NatsNames, seeds?: NatsAuthSeeds): Promise<NatsAuth> {
  const s: NatsAuthSeeds = seeds ?? {
    operator: seedOf(createOperator()),
    systemAccount: seedOf(createAccount()),
    account: seedOf(createAccount()),
    signers: Object.fromEntries(NATS_ROLES.map((r) => [r, seedOf(createAccount())])) as Record<NatsRole, string>,
  };
  const operator = keyFrom(s.operator, "operator");
  const sys = keyFrom(s.systemAccount, "system account");
  const account = keyFrom(s.account, "account");
  const signers = Object.fromEntries(NATS_ROLES.map((r) => {
    if (!s.signers[r]) throw new SluiceError("invalid_argument", `no signing key for role ${r}`);
    return [r, keyFrom(s.signers[r], `${r} signing key`)];
  })) as Record<NatsRole, KeyPair>;

  const operatorJwt = await encodeOperator("sluice", operator, { system_account: sys.getPublicKey() });
  const systemAccountJwt = await encodeAccount("SYS", sys, {}, { signer: operator });
  const scoped: SigningKey[] = NATS_ROLES.map((r) => {
    const p = rolePermissions(names, r);
    return newScopedSigner(signers[r], r, {
      pub: { allow: p.pub.allow, deny: p.pub.deny },
      sub: { allow: p.sub.allow, deny: p.sub.deny },
      // max 1 reply per request received, within the default window
      ...(p.allowResponses ? { resp: { max: 1, ttl: 0 } } : {}),
    });
  });
  const accountJwt = await encodeAccount(
    "SLUICE",
    account,
    {
      signing_keys: scoped,
      // JetStream on for the account, no limits of its own (the servers' max_file_store bounds it)
      limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    },
    { signer: operator },
  );

  /** `signer` undefined: signed by the account's own key (an unscoped user) */
  const issue = async (issuerAccount: KeyPair, signer: KeyPair | undefined, name: string, tags: string[], expiresInSec?: number): Promise<string> => {
    const u = createUser();
    const exp = expiresInSec ? Math.floor(Date.now() / 1000) + expiresInSec : undefined;
    const opts = { ...(signer ? { signer, scopedUser: true } : {}), ...(exp ? { exp } : {}) };
    const jwt = await encodeUser(name, u, issuerAccount, tags.length ? { tags } : {}, opts);
    return td.decode(fmtCreds(jwt, u));
  };

  return {
    seeds: s,
    operatorJwt,
    accountJwt,
    accountPublicKey: account.getPublicKey(),
    systemAccountJwt,
    systemAccountPublicKey: sys.getPublicKey(),
    serverConfig() {
      return [
        "# generated by `sluice nats-auth init`: the operator and the two accounts (public keys and JWTs only)",
        `operator: ${operatorJwt}`,
        `system_account: ${sys.getPublicKey()}`,
        "resolver: MEMORY",
        "resolver_preload: {",
        `  ${sys.getPublicKey()}: ${systemAccountJwt}`,
        `  ${account.getPublicKey()}: ${accountJwt}`,
        "}",
        "",
      ].join("\n");
    },
    async issueUser(user) {
      checkUser(user);
      const tags = roleTags(user.role, user);
      return issue(account, signers[user.role], user.name, tags, user.expiresInSec);
    },
    roleSigner: (role) => ({ role, accountPublicKey: account.getPublicKey(), seed: s.signers[role] }),
    async issueSystemUser(name) {
      // signed by the system account itself: a plain (unscoped) user with the system account's default rights
      return issue(sys, undefined, name, []);
    },
  };
}
