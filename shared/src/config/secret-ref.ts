import { readFile } from "node:fs/promises";
import { SluiceError } from "../errors/index.js";

export interface SecretRefLabel {
  /** what the secret is, for messages: e.g. `upstream credential`, `webhook signing secret` */
  what: string;
  /** where it is looked up, for messages: e.g. `on this data plane` */
  where: string;
}

/**
 * Resolves a secret reference from the bundle in this process: `env:NAME` or `file:/path` (one
 * trailing newline trimmed). Errors name the reference, never the value.
 */
export async function resolveSecretRef(ref: string, label: SecretRefLabel): Promise<string> {
  if (ref.startsWith("env:")) {
    const v = process.env[ref.slice(4)];
    if (v === undefined) throw new SluiceError("unavailable", `${label.what} ${ref} is not set ${label.where}`);
    return v;
  }
  if (ref.startsWith("file:")) {
    try {
      return (await readFile(ref.slice(5), "utf8")).replace(/\r?\n$/, "");
    } catch (e) {
      throw new SluiceError("unavailable", `${label.what} ${ref} cannot be read: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
  throw new SluiceError("failed_precondition", `${label.what} must be an env: or file: reference`);
}
