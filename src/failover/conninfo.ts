// libpq connection strings ("host=a port=5432 user='x y'"): parse, change keys, print — for re-pointing replicas' primary_conninfo.

/** Keys in order of appearance; values unquoted. Throws on a string libpq would reject (unterminated quote). */
export function parseConninfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const n = text.length;
  const space = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  while (i < n) {
    while (i < n && space(text[i])) i++;
    if (i >= n) break;
    // A keyword ends at "=" or whitespace, and then "=" must follow (as libpq reads it).
    const from = i;
    while (i < n && text[i] !== '=' && !space(text[i])) i++;
    const key = text.slice(from, i);
    while (i < n && space(text[i])) i++;
    if (text[i] !== '=' || key === '') throw new Error(`missing "=" after "${key || text.slice(from)}" in connection string`);
    i++;
    while (i < n && space(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new Error('unterminated quoted string in connection string');
        const c = text[i];
        if (c === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
    } else {
      while (i < n && !space(text[i])) {
        if (text[i] === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else value += text[i++];
      }
    }
    out.set(key, value);
  }
  return out;
}

function quote(v: string): string {
  return v !== '' && /^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function formatConninfo(m: ReadonlyMap<string, string>): string {
  return [...m].map(([k, v]) => `${k}=${quote(v)}`).join(' ');
}

/** `text` with `changes` applied (existing keys keep their place; hostaddr is dropped when host changes). */
export function rewriteConninfo(text: string, changes: Record<string, string>): string {
  const m = parseConninfo(text);
  if (changes.host !== undefined) m.delete('hostaddr');
  for (const [k, v] of Object.entries(changes)) m.set(k, v);
  return formatConninfo(m);
}
