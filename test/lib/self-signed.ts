import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A self-signed certificate for 127.0.0.1/localhost made with the openssl CLI, for TLS listeners in tests. */
export function selfSignedCert(dir = mkdtempSync(join(tmpdir(), "sluice-cert-"))): { certFile: string; keyFile: string; cert: Buffer; key: Buffer } {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}
