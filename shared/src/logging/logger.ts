import { pino, destination, type Logger, type LoggerOptions } from "pino";
import { scrubSecrets } from "../errors/scrub-secrets.js";

export type { Logger };

/**
 * Paths pino censors wherever they appear. Secrets must never reach a log line: tokens (JWTs), upstream
 * passwords and any unmasked value. Redaction by path is a second line of defence; the first is to never
 * pass a secret to the logger at all. `scrubSecrets` (errors/scrub-secrets.ts) catches JWT-shaped strings in messages.
 */
export const REDACT_PATHS = [
  "password", "*.password", "*.*.password",
  "token", "*.token", "*.*.token",
  "jwt", "*.jwt",
  "authorization", "*.authorization", "*.headers.authorization",
  "secret", "*.secret", "*.*.secret",
  "credential", "*.credential",
  "privateKey", "*.privateKey",
  "params", "*.params",
];

// the logger's scrubbing is the errors' (one definition; importing it costs no pino)
export { scrubSecrets };

export interface LoggerConfig {
  level?: string;
  name?: string;
  /** where to write; default stderr (fd 2) so stdout stays for command output */
  destination?: number | NodeJS.WritableStream;
}

export function createLogger(cfg: LoggerConfig = {}): Logger {
  const opts: LoggerOptions = {
    level: cfg.level ?? process.env.SLUICE_LOG_LEVEL ?? "info",
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    hooks: {
      // scrub the message and string arguments of every call
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) {
          const a = args[i];
          if (typeof a === "string") args[i] = scrubSecrets(a);
          else if (a instanceof Error) args[i] = { err: { type: a.name, message: scrubSecrets(a.message) } };
        }
        return method.apply(this, args as Parameters<typeof method>);
      },
    },
    base: cfg.name ? { name: cfg.name } : undefined,
  };
  const dest = cfg.destination ?? 2;
  return pino(opts, typeof dest === "number" ? destination({ fd: dest, sync: false }) : dest);
}
