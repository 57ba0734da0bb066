/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): object keys sorted by UTF-16 code units, no
 * whitespace, numbers in ECMAScript shortest form (which is what JSON.stringify emits for finite
 * numbers), strings escaped as JSON.stringify does. Pure.
 *
 * Written with plain loops and string appends (no map/filter/join arrays per object): it runs for
 * every audit event on the data plane's hot path.
 */
export function canonicalJson(value: unknown): string {
  // Fast path: when every object's members already come in canonical order, the canonical text is
  // exactly what the native JSON.stringify writes. The audit payloads are built that way.
  return inCanonicalOrder(value) ? JSON.stringify(value) : canonicalize(value);
}

/**
 * True when JSON.stringify(value) is its canonical JSON: plain objects and arrays only, every
 * object's members (in the order JSON.stringify visits them) strictly ascending by UTF-16 code
 * units, no undefined member or element, finite numbers, no toJSON. Anything else takes the
 * general path, which gives the same answer for these and the right one (or an error) for the rest.
 */
function inCanonicalOrder(value: unknown): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    case "object": {
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const v: unknown = value[i];
          if (v === undefined || !inCanonicalOrder(v)) return false;
        }
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      if (typeof (value as { toJSON?: unknown }).toJSON === "function") return false;
      const obj = value as Record<string, unknown>;
      let prev: string | undefined;
      // own enumerable keys in the order JSON.stringify uses (array-index keys first, then insertion order)
      for (const k of Object.keys(obj)) {
        if (prev !== undefined && !(prev < k)) return false;
        prev = k;
        const v = obj[k];
        if (v === undefined || !inCanonicalOrder(v)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

function canonicalize(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new TypeError("canonicalJson: non-finite number");
      return JSON.stringify(value);
    case "string":
      return JSON.stringify(value);
    case "bigint":
      throw new TypeError("canonicalJson: bigint is not JSON");
    case "object": {
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ",";
          const v: unknown = value[i];
          out += v === undefined ? "null" : canonicalize(v);
        }
        return out + "]";
      }
      const toJSON = (value as { toJSON?: () => unknown }).toJSON;
      if (typeof toJSON === "function") return canonicalize(toJSON.call(value));
      const obj = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly what RFC 8785 §3.2.3 asks for.
      const keys = Object.keys(obj).sort();
      let out = "{";
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        if (!first) out += ",";
        first = false;
        out += JSON.stringify(k) + ":" + canonicalize(v);
      }
      return out + "}";
    }
    default:
      throw new TypeError(`canonicalJson: cannot encode ${typeof value}`);
  }
}
