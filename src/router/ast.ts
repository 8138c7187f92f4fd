// Small typed accessors for libpg-query's JSON parse tree, where every PostgreSQL Node is { NodeTag: fields }.

export type Fields = Record<string, unknown>;

export function isObject(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The tag of a Node wrapper ({ SelectStmt: {...} } -> "SelectStmt"). */
export function nodeTag(node: unknown): string | undefined {
  if (!isObject(node)) return undefined;
  for (const k in node) return k;
  return undefined;
}

/** The fields of a Node wrapper, or of a bare struct (RawStmt.stmt is wrapped, IntoClause inside SelectStmt is not). */
export function fieldsOf(node: unknown): Fields {
  if (!isObject(node)) return {};
  const tag = nodeTag(node);
  const inner = tag === undefined ? undefined : node[tag];
  return isObject(inner) ? inner : {};
}

export function field(f: Fields, key: string): Fields {
  const v = f[key];
  return isObject(v) ? v : {};
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A list of String nodes (qualified names, funcname) as plain strings. */
export function names(v: unknown): string[] {
  const out: string[] = [];
  for (const item of list(v)) {
    const s = str(fieldsOf(item).sval);
    if (s !== undefined) out.push(s);
  }
  return out;
}

export type Constant =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: string }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'null' }
  | { kind: 'param'; number: number };

/**
 * A literal or a $n parameter, looking through casts ('on'::text, $1::bool). Protobuf's JSON leaves out zero
 * values, so `{ ival: {} }` is 0 and `{ boolval: {} }` is false.
 */
export function constant(node: unknown): Constant | undefined {
  const tag = nodeTag(node);
  const f = fieldsOf(node);
  if (tag === 'TypeCast') return constant(f.arg);
  if (tag === 'ParamRef') return { kind: 'param', number: typeof f.number === 'number' ? f.number : 0 };
  if (tag !== 'A_Const') return undefined;
  if (f.isnull === true) return { kind: 'null' };
  if (isObject(f.sval)) return { kind: 'string', value: str(f.sval.sval) ?? '' };
  if (isObject(f.ival)) return { kind: 'number', value: String(f.ival.ival ?? 0) };
  if (isObject(f.fval)) return { kind: 'number', value: str(f.fval.fval) ?? '0' };
  if (isObject(f.boolval)) return { kind: 'boolean', value: f.boolval.boolval === true };
  if (isObject(f.bsval)) return { kind: 'string', value: str(f.bsval.bsval) ?? '' };
  return undefined;
}

/** The text PostgreSQL would see for a literal (SET values, set_config arguments). */
export function constantText(c: Constant): string | null {
  switch (c.kind) {
    case 'string':
    case 'number':
      return c.value;
    case 'boolean':
      return c.value ? 'on' : 'off';
    default:
      return null;
  }
}

// parse_bool() in PostgreSQL: any unique prefix of true/false/yes/no, on/off, 1/0.
export function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (t === '') return undefined;
  if ('true'.startsWith(t) || 'yes'.startsWith(t) || t === 'on' || t === '1') return true;
  if ('false'.startsWith(t) || 'no'.startsWith(t) || (t.length >= 2 && 'off'.startsWith(t)) || t === '0') return false;
  return undefined;
}

export function constantBool(c: Constant | undefined): boolean | undefined {
  if (!c) return undefined;
  if (c.kind === 'boolean') return c.value;
  if (c.kind === 'number') return c.value === '0' ? false : c.value === '1' ? true : undefined;
  if (c.kind === 'string') return parseBool(c.value);
  return undefined;
}

/** A DefElem's argument as a boolean the way utility options read it: no argument means true. */
export function defElemBool(arg: unknown): boolean | undefined {
  if (arg === undefined) return true;
  const tag = nodeTag(arg);
  const f = fieldsOf(arg);
  if (tag === 'String') return parseBool(str(f.sval) ?? '');
  if (tag === 'Integer') return (typeof f.ival === 'number' ? f.ival : 0) !== 0;
  if (tag === 'Boolean') return f.boolval === true;
  return constantBool(constant(arg));
}
