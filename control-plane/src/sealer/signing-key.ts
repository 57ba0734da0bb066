import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { SluiceError } from "@sluice/shared/errors";
import { keyIdOf } from "./checkpoint.js";

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
  /** SPKI PEM of the public key, for pinning (`sluice audit verify --public-key FILE`) */
  publicKeyPem: string;
}

export function signingKeyFrom(privateKey: KeyObject): SigningKey {
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new SluiceError("invalid_argument", `the sealer signing key must be Ed25519, got ${privateKey.asymmetricKeyType}`);
  }
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    keyId: keyIdOf(publicKey),
    publicKeyPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
  };
}

export function generateSigningKey(): SigningKey {
  return signingKeyFrom(generateKeyPairSync("ed25519").privateKey);
}

/**
 * Loads the Ed25519 signing key (PKCS#8 PEM). When the file is absent and `generate` is set
 * (development), a new key is written with mode 0600 next to its public half (`<file>.pub`, SPKI PEM).
 * Production deployments provide the file and pin the public key in their verifiers.
 */
export function loadSigningKey(file: string, opts: { generate?: boolean } = {}): SigningKey {
  if (!existsSync(file)) {
    if (!opts.generate) throw new SluiceError("failed_precondition", `sealer signing key ${file} does not exist`);
    const key = generateSigningKey();
    mkdirSync(dirname(file), { recursive: true });
    // Replicas sharing a directory may start together: the key appears whole or not at all (written
    // aside, then hard-linked into place, which fails if another process linked its key first), and
    // the one that lost uses the key that won.
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, key.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
    try {
      chmodSync(tmp, 0o600);
      linkSync(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      return loadSigningKey(file);
    } finally {
      rmSync(tmp, { force: true });
    }
    writeFileSync(`${file}.pub`, key.publicKeyPem, { mode: 0o644 });
    return key;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file));
  } catch (e) {
    throw new SluiceError("invalid_argument", `sealer signing key ${file} is not a PEM private key: ${(e as Error).message}`);
  }
  return signingKeyFrom(key);
}
