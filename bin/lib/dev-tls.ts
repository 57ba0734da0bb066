import { execFile } from "node:child_process";
import { existsSync, mkdirSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface DevCertificate {
  /** self-signed: the certificate is also the CA clients may pin (sslrootcert) */
  certFile: string;
  keyFile: string;
}

/**
 * A self-signed certificate for localhost/127.0.0.1 made with the openssl CLI, kept in `dir` and reused
 * while it is valid for at least another day (so a CA pinned by a client survives a restart).
 */
export async function ensureDevCertificate(dir: string): Promise<DevCertificate> {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, "dev-cert.pem");
  const keyFile = join(dir, "dev-key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) {
    try {
      await run("openssl", ["x509", "-checkend", "86400", "-noout", "-in", certFile]);
      return { certFile, keyFile };
    } catch {
      // expired or unreadable: make a new one
    }
  }
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "365", "-subj", "/CN=sluice dev",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
  ]);
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}
