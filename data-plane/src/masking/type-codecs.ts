/**
 * How a column's value is represented on the wire, per type: which types are masked as text,
 * JSON or integers, and which of them can be masked in binary format. Pure.
 */

export type CodecKind = "text" | "json" | "jsonb" | "int" | "number" | "other";

export interface FieldCodec {
  typeName: string;
  kind: CodecKind;
  /** int widths for binary masking */
  bits?: 16 | 32 | 64;
  /** can a value of this type be masked in binary format */
  binary: boolean;
}

/** Builtin type OIDs (pg_type.h; stable across versions). */
const BUILTIN: Record<number, FieldCodec> = {
  16: { typeName: "bool", kind: "other", binary: false },
  17: { typeName: "bytea", kind: "other", binary: false },
  18: { typeName: "char", kind: "text", binary: true },
  19: { typeName: "name", kind: "text", binary: true },
  20: { typeName: "int8", kind: "int", bits: 64, binary: true },
  21: { typeName: "int2", kind: "int", bits: 16, binary: true },
  23: { typeName: "int4", kind: "int", bits: 32, binary: true },
  25: { typeName: "text", kind: "text", binary: true },
  26: { typeName: "oid", kind: "number", binary: false },
  114: { typeName: "json", kind: "json", binary: true },
  142: { typeName: "xml", kind: "text", binary: false },
  650: { typeName: "cidr", kind: "other", binary: false },
  700: { typeName: "float4", kind: "number", binary: false },
  701: { typeName: "float8", kind: "number", binary: false },
  705: { typeName: "unknown", kind: "text", binary: true },
  829: { typeName: "macaddr", kind: "other", binary: false },
  869: { typeName: "inet", kind: "other", binary: false },
  1042: { typeName: "bpchar", kind: "text", binary: true },
  1043: { typeName: "varchar", kind: "text", binary: true },
  1082: { typeName: "date", kind: "other", binary: false },
  1083: { typeName: "time", kind: "other", binary: false },
  1114: { typeName: "timestamp", kind: "other", binary: false },
  1184: { typeName: "timestamptz", kind: "other", binary: false },
  1700: { typeName: "numeric", kind: "number", binary: false },
  2950: { typeName: "uuid", kind: "other", binary: false },
  3802: { typeName: "jsonb", kind: "jsonb", binary: true },
  1009: { typeName: "_text", kind: "other", binary: false },
  1015: { typeName: "_varchar", kind: "other", binary: false },
};

const BY_NAME: Record<string, FieldCodec> = Object.fromEntries(Object.values(BUILTIN).map((c) => [c.typeName, c]));
BY_NAME["citext"] = { typeName: "citext", kind: "text", binary: true };
BY_NAME["character varying"] = BY_NAME["varchar"]!;
BY_NAME["character"] = BY_NAME["bpchar"]!;
BY_NAME["integer"] = BY_NAME["int4"]!;
BY_NAME["bigint"] = BY_NAME["int8"]!;
BY_NAME["smallint"] = BY_NAME["int2"]!;

/** Type OIDs whose name the catalog must supply (not builtin). */
export function isBuiltinType(oid: number): boolean {
  return oid in BUILTIN;
}

/** The codec for a type OID; `typeName` (from the catalog) covers extension types like citext. */
export function codecFor(oid: number, typeName?: string): FieldCodec {
  const b = BUILTIN[oid];
  if (b) return b;
  if (typeName) {
    const n = typeName.toLowerCase();
    return BY_NAME[n] ?? { typeName: n, kind: "other", binary: false };
  }
  return { typeName: `oid:${oid}`, kind: "other", binary: false };
}

/** Canonical type name for `types:` rules (`integer` → int4, `character varying` → varchar). */
export function canonicalTypeName(name: string): string {
  return BY_NAME[name.toLowerCase()]?.typeName ?? name.toLowerCase();
}
