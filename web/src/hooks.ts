import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";

/** The current time, re-rendered every `everyMs`. */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

export interface Loaded<T> {
  data?: T;
  error?: string;
  reload: () => void;
}

/** GETs `path` (again whenever `path` or `nonce` changes); keeps the last data while reloading. */
export function useApi<T>(path: string | undefined, nonce: unknown = 0): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return;
    let live = true;
    api.get<T>(path).then(
      (data) => live && setState({ data }),
      (e: Error) => live && setState((s) => ({ ...s, error: e.message })),
    );
    return () => {
      live = false;
    };
  }, [path, nonce, tick]);
  return { ...state, reload: () => setTick((n) => n + 1) };
}

/** Server-sent events from the console API: `onEvent` for each named event (reconnects by itself). */
export function useEvents(path: string | undefined, names: readonly string[], onEvent: (name: string, data: unknown) => void): void {
  useEffect(() => {
    if (!path) return;
    const es = new EventSource(`/console/api/${path}`, { withCredentials: true });
    const handlers = names.map((n) => {
      const h = (e: MessageEvent<string>) => onEvent(n, JSON.parse(e.data || "{}"));
      es.addEventListener(n, h);
      return [n, h] as const;
    });
    return () => {
      for (const [n, h] of handlers) es.removeEventListener(n, h);
      es.close();
    };
    // the handler may change every render; the subscription must not
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, names.join(",")]);
}
