/**
 * Flushes the masking catalog of a resource when one of its statements completes with a DDL
 * command tag (CREATE/ALTER/DROP …), so a renamed column or a redefined view is looked up again
 * instead of waiting for the cache TTL. A completion listener of its own, beside the audit: the
 * session tells every listener of each completed statement.
 */
import type { CompletionListener } from "../session/session-hooks.js";

const DDL_TAG = /^(CREATE|ALTER|DROP|COMMENT|SECURITY LABEL|IMPORT FOREIGN SCHEMA)\b/;

export function ddlInvalidationListener(invalidate: (resource: string) => void): CompletionListener {
  return (session, done) => {
    if (done.commandTag !== undefined && DDL_TAG.test(done.commandTag)) invalidate(session.resource);
  };
}
