/**
 * A small SQL tokenizer for highlighting only (the decision is the server's, made with the real
 * PostgreSQL parser). It never drops or changes a character: the tokens' texts joined are the input.
 */
export type TokenKind = "keyword" | "string" | "number" | "comment" | "param" | "ident" | "quoted" | "op" | "space";

export interface Token {
  kind: TokenKind;
  text: string;
}

const KEYWORDS = new Set(
  ("select from where and or not insert into values update set delete create alter drop table index view schema database " +
    "truncate grant revoke on to as join left right inner outer full cross natural using group by order having limit offset " +
    "union all distinct returning with recursive case when then else end is null true false in exists between like ilike " +
    "primary key foreign references default constraint unique check begin commit rollback savepoint release transaction copy " +
    "stdin stdout program function procedure returns language execute prepare deallocate declare cursor fetch move close " +
    "explain analyze vacuum show reset discard listen notify lock do if cascade restrict only asc desc nulls first last " +
    "serial bigserial int integer bigint smallint text varchar char boolean numeric date timestamp timestamptz jsonb json uuid").split(" "),
);

const RULES: Array<[TokenKind, RegExp]> = [
  ["space", /\s+/y],
  ["comment", /--[^\n]*/y],
  ["comment", /\/\*[\s\S]*?(\*\/|$)/y],
  ["string", /[eE]?'(?:[^']|'')*('|$)/y],
  ["string", /\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?(\$\1\$|$)/y],
  ["param", /\$\d+/y],
  ["quoted", /"(?:[^"]|"")*("|$)/y],
  ["number", /\d+(\.\d+)?([eE][+-]?\d+)?/y],
  ["ident", /[A-Za-z_][A-Za-z0-9_$]*/y],
  ["op", /::|<=|>=|<>|!=|\|\||[-+*/%=<>(),.;:\[\]{}^~!@#&|?]/y],
];

export function tokenizeSql(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    let matched = false;
    for (const [kind, re] of RULES) {
      re.lastIndex = i;
      const m = re.exec(sql);
      if (m && m[0].length > 0) {
        const text = m[0];
        out.push({ kind: kind === "ident" && KEYWORDS.has(text.toLowerCase()) ? "keyword" : kind, text });
        i += text.length;
        matched = true;
        break;
      }
    }
    if (!matched) {
      out.push({ kind: "op", text: sql[i]! });
      i++;
    }
  }
  return out;
}
