/**
 * Flushes the masking catalog of a resource when one of its statements completes with a DDL
 * command tag (CREATE/ALTER/DROP …), so a renamed column or a redefined view is looked up again
 * instead of waiting for the cache TTL. Wraps the audit sink because statementCompleted is where
 * the session reports command tags.
 */
import type { AuditSink } from "../session/session-hooks.js";

const DDL_TAG = /^(CREATE|ALTER|DROP|COMMENT|SECURITY LABEL|IMPORT FOREIGN SCHEMA)\b/;

export function withDdlInvalidation(audit: AuditSink, invalidate: (resource: string) => void): AuditSink {
  const statementCompleted: AuditSink["statementCompleted"] = (session, done) => {
    if (done.commandTag && DDL_TAG.test(done.commandTag)) invalidate(session.resource);
    audit.statementCompleted?.(session, done);
  };
  // a Proxy, not a spread: the sink may be a class instance whose methods need their own `this`
  return new Proxy(audit, {
    get(target, prop, receiver) {
      if (prop === "statementCompleted") return statementCompleted;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
    has(target, prop) {
      return prop === "statementCompleted" || Reflect.has(target, prop);
    },
  });
}
