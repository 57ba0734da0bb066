/** Fleet: the data planes heartbeating, with the policy revision each one serves. Refreshed every 5 s. */
import { useEffect, useState } from "preact/hooks";
import type { FleetNode } from "../api.ts";
import { useApi } from "../hooks.ts";
import { ago, when } from "../time.ts";
import { Badge, Loading, Notice } from "../ui.tsx";

export function FleetPage() {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, []);
  const fleet = useApi<{ now: string; nodes: FleetNode[] }>("fleet", tick);
  const policy = useApi<{ snapshot: { revision: number } | null }>("policy");
  const current = policy.data?.snapshot?.revision;
  return (
    <>
      <h1>Fleet</h1>
      <p class="lede">Data planes heartbeating into the fleet bucket{current ? <>; the current policy is revision <strong>{current}</strong></> : null}.</p>
      {fleet.error && <Notice kind="error">{fleet.error}</Notice>}
      {!fleet.data && !fleet.error && <Loading />}
      {fleet.data && (fleet.data.nodes.length === 0 ? (
        <p class="empty">No data plane is heartbeating.</p>
      ) : (
        <div class="table-wrap">
          <table class="list">
            <caption class="sr-only">Data-plane nodes</caption>
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">Region</th>
                <th scope="col">Version</th>
                <th scope="col" class="num">Policy revision</th>
                <th scope="col" class="num">Connections</th>
                <th scope="col">Listening</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {fleet.data.nodes.map((n) => (
                <tr key={n.node}>
                  <td><code>{n.node}</code></td>
                  <td>{n.region}</td>
                  <td>{n.version}</td>
                  <td class="num">
                    {n.snapshotRevision}
                    {current !== undefined && n.snapshotRevision !== current ? <span class="warn-text"> (behind)</span> : null}
                  </td>
                  <td class="num">{n.connections}</td>
                  <td>{n.listen ?? "–"}</td>
                  <td title={when(n.lastBeat)}>{n.ageMs === undefined ? "–" : ago(n.ageMs)}</td>
                  <td>{n.malformed ? <Badge value="failed">unreadable</Badge> : n.stale ? <Badge value="stale" /> : <Badge value="ok" />}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </>
  );
}
