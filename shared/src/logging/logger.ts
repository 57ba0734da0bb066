import { pino, destination, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/**
 * Paths pino censors wherever they appear. Secrets must never reach a log line: tokens (JWTs), upstream
 * passwords and any unmasked value. Redaction by path is a second line of defence; the first is to never
 * pass a secret to the logger at all. `scrubSecrets` below catches JWT-shaped strings in messages.
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

const JWT_RE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const URL_PASSWORD_RE = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)[^@\s]+@/gi;

/** Replaces JWT-shaped substrings and URL passwords in a string. */
export function scrubSecrets(s: string): string {
  return s.replace(JWT_RE, "[jwt]").replace(URL_PASSWORD_RE, "$1[redacted]@");
}

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
