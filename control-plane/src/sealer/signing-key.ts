import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
    writeFileSync(file, key.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
    chmodSync(file, 0o600);
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
