/**
 * Secrets out of text that is printed: error messages (the CLI's one line, a service's status) and
 * log lines. Its own file, apart from the logger, so that a command printing an error does not load
 * pino to do it.
 */
const JWT_RE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const URL_PASSWORD_RE = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+:)[^@\s]+@/gi;

/** Replaces JWT-shaped substrings and URL passwords in a string. */
export function scrubSecrets(s: string): string {
  return s.replace(JWT_RE, "[jwt]").replace(URL_PASSWORD_RE, "$1[redacted]@");
}
