/**
 * The planes' /metrics on prom-client registries. Figures counted on the hot path stay plain numbers
 * in the stats objects that own them (or in a FixedHistogram) and are read here at scrape time, in a
 * `collect()`: nothing per statement allocates or builds a label string. Events that are rare (a gRPC
 * call, a webhook attempt) may use prom-client's Counter directly.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";
import type { FixedHistogram } from "./fixed-histogram.js";

export { Counter, Gauge, Registry };

/** A registry with prom-client's default process and Node.js metrics (`process_*`, `nodejs_*`). */
export function newMetricsRegistry(o: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (o.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  return registry;
}

type Read<T> = () => T | Promise<T>;

/** A gauge whose value is read at scrape time. */
export function gaugeFrom(registry: Registry, name: string, help: string, read: Read<number>): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    async collect() {
      this.set(await read());
    },
  });
}

/** A gauge with one label, read at scrape time as label value → number. */
export function gaugesFrom(registry: Registry, name: string, help: string, label: string, read: Read<Record<string, number>>): Gauge {
  return new Gauge({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    async collect() {
      const values = await read();
      this.reset();
      for (const k of Object.keys(values)) this.set({ [label]: k }, values[k]!);
    },
  });
}

/** A counter kept elsewhere as a plain number (monotonic), read at scrape time. */
export function counterFrom(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter with one label kept elsewhere as plain numbers (label value → count), read at scrape time. */
export function countersFrom(registry: Registry, name: string, help: string, label: string, read: () => Record<string, number>): Counter {
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      const values = read();
      this.reset();
      for (const k of Object.keys(values)) this.inc({ [label]: k }, values[k]!);
    },
  });
}

/**
 * A FixedHistogram exposed as a Prometheus histogram. prom-client has no histogram that can be set
 * from counts kept elsewhere, so this is a small collector of its own that the registry renders like
 * its own metrics (it only calls `get()`).
 */
export function histogramFrom(registry: Registry, name: string, help: string, h: FixedHistogram): void {
  histogramCollector(registry, name, help, () => [[{}, h]]);
}

/** FixedHistograms exposed as one Prometheus histogram with one label (label value → histogram). */
export function histogramsFrom(registry: Registry, name: string, help: string, label: string, hs: Readonly<Record<string, FixedHistogram>>): void {
  histogramCollector(registry, name, help, () => Object.entries(hs).map(([k, h]) => [{ [label]: k }, h]));
}

function histogramCollector(registry: Registry, name: string, help: string, series: () => Array<[Record<string, string>, FixedHistogram]>): void {
  const bucket = `${name}_bucket`;
  const collector = {
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    reset() {
      // the counts belong to the code that observes them
    },
    async get() {
      const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = [];
      for (const [labels, h] of series()) {
        let acc = 0;
        for (let i = 0; i < h.bounds.length; i++) {
          acc += h.counts[i]!;
          values.push({ value: acc, labels: { ...labels, le: h.bounds[i]! }, metricName: bucket });
        }
        values.push({ value: h.count, labels: { ...labels, le: "+Inf" }, metricName: bucket });
        values.push({ value: h.sum, labels, metricName: `${name}_sum` });
        values.push({ value: h.count, labels, metricName: `${name}_count` });
      }
      return { name, help, type: "histogram", aggregator: "sum", values };
    },
  };
  registry.registerMetric(collector as unknown as Metric);
}

/** The text exposition of a registry and its content type, for an HTTP handler. */
export async function exposition(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
