/**
 * Sign-in for people: /console/auth/login starts the authorization code flow with PKCE against a
 * configured issuer, /console/auth/callback finishes it and opens a console session, and
 * /console/auth/logout ends it. State, nonce and the PKCE verifier travel in a sealed, HttpOnly,
 * SameSite=Lax cookie scoped to /console/auth (any replica can finish a sign-in another started).
 * The session is a sealed HttpOnly SameSite=Strict cookie holding only the person's identity
 * (subject, issuer name, groups) and its expiry: no token is kept, none reaches the browser.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { SluiceError } from "@sluice/shared/errors";
import type { Logger } from "@sluice/shared/logging";
import type { Actor } from "../domain/command-meta.js";
import { escapeHtml, securityHeaders, sendPage } from "./http-kit.js";
import { OidcClient, pkcePair, randomToken } from "./oidc-client.js";
import { parseCookies, serializeCookie, type SealedBox } from "./sealed-box.js";

export const CONSOLE_PREFIX = "/console/";

export interface ConsoleSession {
  v: 1;
  /** random; the CSRF token is derived from it */
  sid: string;
  sub: string;
  iss: string;
  groups: string[];
  /** a display name from the ID token (name, or email), when it has one */
  name?: string;
  iat: number;
  exp: number;
}

interface LoginTransaction {
  issuer: string;
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  exp: number;
}

export interface ConsoleAuthOptions {
  box: SealedBox;
  clients: readonly OidcClient[];
  /** the console's origin as browsers reach it, e.g. http://127.0.0.1:7481 */
  publicUrl: () => string;
  sessionTtlMs: number;
  logger: Logger;
  now: () => Date;
}

const LOGIN_TTL_MS = 10 * 60_000;

export function actorOf(s: ConsoleSession): Actor {
  return { subject: s.sub, issuer: s.iss, groups: [...s.groups] };
}

/** Only console pages are valid places to come back to after sign-in. */
function safeReturn(v: string | null | undefined): string {
  return v && v.startsWith(CONSOLE_PREFIX) && !v.startsWith("//") && !/[\\\r\n]/.test(v) ? v : CONSOLE_PREFIX;
}

export class ConsoleAuth {
  constructor(private readonly o: ConsoleAuthOptions) {}

  private get secure(): boolean {
    return this.o.publicUrl().startsWith("https:");
  }

  /** `__Host-` needs Secure and Path=/; on plain http (loopback development) the cookie is scoped to /console. */
  private get sessionCookie(): { name: string; path: string } {
    return this.secure ? { name: "__Host-sluice-console", path: "/" } : { name: "sluice-console", path: "/console" };
  }

  private get loginCookie(): { name: string; path: string } {
    return { name: this.secure ? "__Secure-sluice-console-login" : "sluice-console-login", path: "/console/auth" };
  }

  get redirectUri(): string {
    return `${this.o.publicUrl()}${CONSOLE_PREFIX}auth/callback`;
  }

  issuers(): Array<{ name: string }> {
    return this.o.clients.map((c) => ({ name: c.name }));
  }

  /** The signed-in person of this request, or undefined. */
  current(req: IncomingMessage): ConsoleSession | undefined {
    const s = this.o.box.open<ConsoleSession>("session", parseCookies(req.headers.cookie).get(this.sessionCookie.name));
    if (!s || s.v !== 1 || typeof s.sub !== "string" || !Array.isArray(s.groups)) return undefined;
    return s.exp * 1000 > this.o.now().getTime() ? s : undefined;
  }

  csrfToken(s: ConsoleSession): string {
    return this.o.box.csrfToken(s.sid);
  }

  /**
   * A state-changing request must come from the console's own page: its Origin (or, failing that,
   * Sec-Fetch-Site) says so, and it carries the session's CSRF token in `x-csrf-token`.
   */
  checkCsrf(req: IncomingMessage, s: ConsoleSession): void {
    const origin = req.headers.origin;
    const sameOrigin = origin ? origin === new URL(this.o.publicUrl()).origin : req.headers["sec-fetch-site"] === "same-origin";
    if (!sameOrigin) throw new SluiceError("permission_denied", "cross-site request refused");
    const token = req.headers["x-csrf-token"];
    if (!this.o.box.csrfValid(s.sid, typeof token === "string" ? token : undefined)) throw new SluiceError("permission_denied", "missing or wrong CSRF token: reload the page");
  }

  async login(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const wanted = url.searchParams.get("issuer");
    const client = wanted ? this.o.clients.find((c) => c.name === wanted) : this.o.clients.length === 1 ? this.o.clients[0] : undefined;
    if (!client) {
      if (this.o.clients.length === 0) return sendPage(res, 503, "Sign-in is not configured", "<p>No issuer is configured for people (<code>controlPlane.console.issuers</code>).</p>");
      const links = this.o.clients.map((c) => `<li><a href="${CONSOLE_PREFIX}auth/login?issuer=${encodeURIComponent(c.name)}">${escapeHtml(c.name)}</a></li>`).join("");
      return sendPage(res, 200, "Sign in", `<p>Choose how to sign in:</p><ul>${links}</ul>`);
    }
    const pkce = pkcePair();
    const tx: LoginTransaction = {
      issuer: client.name,
      state: randomToken(),
      nonce: randomToken(),
      verifier: pkce.verifier,
      returnTo: safeReturn(url.searchParams.get("return")),
      exp: this.o.now().getTime() + LOGIN_TTL_MS,
    };
    let location: string;
    try {
      location = await client.authorizationUrl({ redirectUri: this.redirectUri, state: tx.state, nonce: tx.nonce, challenge: pkce.challenge });
    } catch (e) {
      this.o.logger.warn({ issuer: client.name, err: (e as Error).message }, "console sign-in: issuer unavailable");
      return sendPage(res, 503, "Sign-in unavailable", `<p>The issuer ${escapeHtml(client.name)} cannot be reached right now.</p>`);
    }
    const c = this.loginCookie;
    res.writeHead(302, {
      ...securityHeaders(),
      location,
      "cache-control": "no-store",
      "set-cookie": serializeCookie(c.name, this.o.box.seal("login", tx), { path: c.path, maxAgeSec: LOGIN_TTL_MS / 1000, secure: this.secure, sameSite: "Lax" }),
    });
    res.end();
  }

  async callback(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const lc = this.loginCookie;
    const clearLogin = serializeCookie(lc.name, "", { path: lc.path, maxAgeSec: 0, secure: this.secure, sameSite: "Lax" });
    const fail = (status: number, why: string) => {
      res.setHeader("set-cookie", clearLogin);
      sendPage(res, status, "Sign-in failed", `<p>${escapeHtml(why)}</p><p><a href="${CONSOLE_PREFIX}auth/login">Try again</a></p>`);
    };
    const tx = this.o.box.open<LoginTransaction>("login", parseCookies(req.headers.cookie).get(lc.name));
    if (!tx || tx.exp < this.o.now().getTime()) return fail(400, "This sign-in was not started here, or took too long.");
    const state = url.searchParams.get("state") ?? "";
    const a = Buffer.from(state);
    const b = Buffer.from(tx.state);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return fail(400, "This sign-in does not match the one started here.");
    const error = url.searchParams.get("error");
    if (error) return fail(401, `The issuer refused the sign-in (${/^[a-z_]{1,40}$/.test(error) ? error : "error"}).`);
    const code = url.searchParams.get("code");
    const client = this.o.clients.find((c) => c.name === tx.issuer);
    if (!code || !client) return fail(400, "The issuer sent no authorization code.");
    let verified;
    try {
      verified = await client.signIn({ code, redirectUri: this.redirectUri, verifier: tx.verifier, nonce: tx.nonce });
    } catch (e) {
      const se = SluiceError.from(e);
      this.o.logger.info({ issuer: client.name, code: se.code, reason: se.message }, "console sign-in refused");
      return fail(se.code === "unavailable" ? 503 : 401, se.code === "internal" ? "Sign-in failed." : se.message);
    }
    const now = Math.floor(this.o.now().getTime() / 1000);
    const name = typeof verified.claims.name === "string" ? verified.claims.name : typeof verified.claims.email === "string" ? verified.claims.email : undefined;
    const session: ConsoleSession = {
      v: 1,
      sid: randomUUID(),
      sub: verified.subject,
      iss: verified.issuer,
      groups: verified.groups,
      ...(name ? { name: name.slice(0, 200) } : {}),
      iat: now,
      exp: now + Math.floor(this.o.sessionTtlMs / 1000),
    };
    this.o.logger.info({ subject: session.sub, issuer: session.iss, groups: session.groups }, "console sign-in");
    const sc = this.sessionCookie;
    res.writeHead(303, {
      ...securityHeaders(),
      location: tx.returnTo,
      "cache-control": "no-store",
      "set-cookie": [clearLogin, serializeCookie(sc.name, this.o.box.seal("session", session), { path: sc.path, maxAgeSec: this.o.sessionTtlMs / 1000, secure: this.secure, sameSite: "Strict" })],
    });
    res.end();
  }

  /** Ends the session in this browser (POST with the CSRF token, like every change). */
  logout(res: ServerResponse): void {
    const sc = this.sessionCookie;
    res.writeHead(204, { ...securityHeaders(), "cache-control": "no-store", "set-cookie": serializeCookie(sc.name, "", { path: sc.path, maxAgeSec: 0, secure: this.secure, sameSite: "Strict" }) });
    res.end();
  }
}
