/**
 * Headless Chromium (Debian's `chromium`, driven by playwright-core: no browser download) for the
 * console's end-to-end tests: sign in through the dev issuer's login page as a person would, audit a
 * page with axe-core, keep a screenshot of it, and watch what reaches the browser.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import axe from "axe-core";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const SCREENSHOTS = fileURLToPath(new URL("./screenshots/", import.meta.url));

export function chromiumPath(): string {
  for (const p of [process.env.SLUICE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) if (p && existsSync(p)) return p;
  throw new Error("no Chromium: scripts/ensure-services.sh installs Debian's chromium package");
}

export function launchChromium(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
  return chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--disable-dev-shm-usage"], headless: true });
}

export interface Person {
  context: BrowserContext;
  page: Page;
  /** every console API answer body this browser received (event streams excepted) */
  received: string[];
  /** Content-Security-Policy violations and page errors seen */
  problems: string[];
}

/** Signs in at the console through the dev issuer's login page, as `sub` with `groups`. */
export async function signIn(browser: Browser, base: string, sub: string, groups: string[]): Promise<Person> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-GB", timezoneId: "UTC" });
  const received: string[] = [];
  const problems: string[] = [];
  context.on("response", (r) => {
    const u = r.url();
    if (!u.includes("/console/api/") || u.endsWith("/events") || u.endsWith("/follow")) return;
    r.text().then((t) => received.push(t), () => undefined);
  });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const first = await page.goto(`${base}/console/`);
  // a checkout whose web/dist is missing gets the server's 503 page: say so instead of timing out on a link
  if (first?.status() === 503) throw new Error("the console is not built: run node scripts/build-web.mjs (npm test does)");
  await page.getByRole("link", { name: "Sign in with dev" }).click();
  await page.getByLabel("Subject").fill(sub);
  await page.getByLabel("Groups (comma-separated)").fill(groups.join(","));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Approvals", level: 1 }).waitFor();
  return { context, page, received, problems };
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** axe-core's WCAG 2 A/AA rules on the page as it is now (labels, contrast, landmarks, names, …). */
export async function axeAudit(page: Page): Promise<AxeViolation[]> {
  // evaluated through the DevTools protocol, which the page's CSP does not govern
  if (!(await page.evaluate("typeof window.axe === 'object'"))) await page.evaluate(axe.source);
  return (await page.evaluate(`axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } })
    .then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) })))`)) as AxeViolation[];
}

/** A full-page screenshot in test/console/screenshots/ (git-ignored), to be looked at. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
