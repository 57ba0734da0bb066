import { readFile } from "node:fs/promises";
import { SluiceError } from "@sluice/shared/errors";

/**
 * Resolves a credential reference from the bundle on this data plane: `env:NAME` or `file:/path`
 * (trailing newline trimmed). The error names the reference, never the value.
 */
export async function resolveSecret(ref: string): Promise<string> {
  if (ref.startsWith("env:")) {
    const name = ref.slice(4);
    const v = process.env[name];
    if (v === undefined) throw new SluiceError("unavailable", `upstream credential ${ref} is not set on this data plane`);
    return v;
  }
  if (ref.startsWith("file:")) {
    try {
      return (await readFile(ref.slice(5), "utf8")).replace(/\r?\n$/, "");
    } catch (e) {
      throw new SluiceError("unavailable", `upstream credential ${ref} cannot be read: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
  throw new SluiceError("failed_precondition", "upstream credential must be an env: or file: reference");
}
