/** A minimal Prometheus registry: counters and gauges with labels, rendered in the text format 0.0.4. */
type Labels = Record<string, string>;

interface Family {
  type: "counter" | "gauge";
  help: string;
  values: Map<string, { labels: Labels; value: number | (() => number) }>;
}

function key(l: Labels): string {
  return Object.keys(l).sort().map((k) => `${k}=${l[k]}`).join(",");
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  private family(name: string, type: Family["type"], help: string): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { type, help, values: new Map() };
      this.families.set(name, f);
    }
    return f;
  }

  counter(name: string, help: string) {
    const f = this.family(name, "counter", help);
    return {
      inc: (labels: Labels = {}, by = 1) => {
        const k = key(labels);
        const cur = f.values.get(k);
        const v = cur && typeof cur.value === "number" ? cur.value : 0;
        f.values.set(k, { labels, value: v + by });
      },
    };
  }

  /** a gauge read at scrape time */
  gauge(name: string, help: string, read: () => number, labels: Labels = {}): void {
    this.family(name, "gauge", help).values.set(key(labels), { labels, value: read });
  }

  render(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      for (const { labels, value } of f.values.values()) {
        const l = Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(",");
        const v = typeof value === "function" ? value() : value;
        out.push(`${name}${l ? `{${l}}` : ""} ${Number.isFinite(v) ? v : 0}`);
      }
    }
    return out.join("\n") + "\n";
  }
}
