/**
 * The approver's console: sign-in, navigation and the five pages. Routes live in the URL's hash
 * (#/approvals, #/sessions, #/sessions/<id>, #/fleet, #/policy, #/evidence) so the control plane
 * serves one static page.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, logout, setCsrfToken, type Me } from "./api.ts";
import { Groups, Loading, Notice } from "./ui.tsx";
import { ApprovalsPage } from "./pages/approvals.tsx";
import { SessionsPage } from "./pages/sessions.tsx";
import { SessionPage } from "./pages/session.tsx";
import { FleetPage } from "./pages/fleet.tsx";
import { PolicyPage } from "./pages/policy.tsx";
import { EvidencePage } from "./pages/evidence.tsx";
import "./styles.css";

const PAGES = [
  { path: "approvals", title: "Approvals" },
  { path: "sessions", title: "Sessions" },
  { path: "fleet", title: "Fleet" },
  { path: "policy", title: "Policy" },
  { path: "evidence", title: "Evidence" },
] as const;

export interface Route {
  page: string;
  id?: string;
  query: URLSearchParams;
}

function parseHash(): Route {
  const h = location.hash.replace(/^#\/?/, "");
  const [path = "", q = ""] = h.split("?");
  const [page = "approvals", id] = path.split("/");
  return { page: page || "approvals", ...(id ? { id: decodeURIComponent(id) } : {}), query: new URLSearchParams(q) };
}

function useRoute(): Route {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function SignIn({ me }: { me: Me }) {
  const back = encodeURIComponent(`/console/${location.hash}`);
  const issuers = me.issuers ?? [];
  return (
    <main id="main" class="signin">
      <h1>sluice console</h1>
      <p>Approve held statements, replay sessions and check the evidence. Sign in with your organisation's identity provider.</p>
      {issuers.length === 0 ? (
        <Notice kind="error">No identity provider is configured for people (controlPlane.console.issuers).</Notice>
      ) : (
        <ul class="signin-list">
          {issuers.map((i) => (
            <li key={i.name}>
              <a class="button primary" href={`/console/auth/login?issuer=${encodeURIComponent(i.name)}&return=${back}`}>
                Sign in with {i.name}
              </a>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | undefined>();
  const [error, setError] = useState("");
  useEffect(() => {
    api.get<Me>("me").then(
      (m) => {
        if (m.csrfToken) setCsrfToken(m.csrfToken);
        setMe(m);
      },
      (e: Error) => setError(e.message),
    );
  }, []);
  const page = PAGES.find((p) => p.path === route.page) ?? PAGES[0];
  useEffect(() => {
    document.title = `${route.id ? `Session ${route.id}` : page.title} · sluice console`;
  }, [page, route.id]);

  if (error) return <main id="main"><Notice kind="error">Cannot reach the console API: {error}</Notice></main>;
  if (!me) return <main id="main"><Loading /></main>;
  if (!me.signedIn) return <SignIn me={me} />;

  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">sluice</span>
        <nav aria-label="Console pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p.path === page.path ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="who-name" title={`${me.issuer}:${me.subject}`}>{me.name ?? me.subject}</span>
          <Groups groups={me.groups ?? []} />
          <button
            type="button"
            class="link"
            onClick={() => {
              void logout().then(() => location.reload());
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page.path === "approvals" && <ApprovalsPage me={me} />}
        {page.path === "sessions" && (route.id ? <SessionPage id={route.id} /> : <SessionsPage query={route.query} />)}
        {page.path === "fleet" && <FleetPage />}
        {page.path === "policy" && <PolicyPage />}
        {page.path === "evidence" && <EvidencePage />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
