// The statement text with its literal constants blanked out: one cache key for every `… WHERE aid = 12345`.
//
// Applications that inline values (simple protocol) send a new text for every query; without this each one
// is parsed (~15 µs) and pushes useful entries out of the cache. Only decisions that cannot depend on a
// literal's value are cached under this key (see Classifier), so two texts that differ only in constants
// route alike. Comments are kept: hints live there.

const QUOTE = 0x27; // '
const DQUOTE = 0x22; // "
const DOLLAR = 0x24; // $

function isIdentChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c >= 0x80 || c === DOLLAR;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** null when the text cannot be scanned safely (unterminated quote or comment): then it is not cached this way. */
export function literalFreeKey(sql: string): string | null {
  let out = '';
  let from = 0;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === QUOTE) {
      // 'text', with '' inside; E'…' also takes backslash escapes.
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 0;
      const escapes = (prev === 0x45 || prev === 0x65) && (i < 2 || !isIdentChar(sql.charCodeAt(i - 2)));
      let j = i + 1;
      for (;;) {
        if (j >= n) return null;
        const d = sql.charCodeAt(j);
        if (escapes && d === 0x5c) j += 2;
        else if (d === QUOTE) {
          if (j + 1 < n && sql.charCodeAt(j + 1) === QUOTE) j += 2;
          else break;
        } else j++;
      }
      out += sql.slice(from, i) + '?';
      i = j + 1;
      from = i;
    } else if (c === DQUOTE) {
      const j = sql.indexOf('"', i + 1);
      if (j < 0) return null;
      i = j + 1;
    } else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) {
      const j = sql.indexOf('\n', i);
      i = j < 0 ? n : j + 1;
    } else if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      let depth = 1;
      let j = i + 2;
      while (depth > 0) {
        if (j >= n) return null;
        if (sql.charCodeAt(j) === 0x2f && sql.charCodeAt(j + 1) === 0x2a) {
          depth++;
          j += 2;
        } else if (sql.charCodeAt(j) === 0x2a && sql.charCodeAt(j + 1) === 0x2f) {
          depth--;
          j += 2;
        } else j++;
      }
      i = j;
    } else if (c === DOLLAR && (i === 0 || !isIdentChar(sql.charCodeAt(i - 1)))) {
      // $1 is a parameter (kept); $tag$…$tag$ is a string (blanked).
      if (isDigit(sql.charCodeAt(i + 1))) {
        i += 2;
        continue;
      }
      const close = sql.indexOf('$', i + 1);
      if (close < 0) return null;
      const tag = sql.slice(i, close + 1);
      if (!/^\$[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*\$$|^\$\$$/.test(tag)) {
        i++;
        continue;
      }
      const end = sql.indexOf(tag, close + 1);
      if (end < 0) return null;
      out += sql.slice(from, i) + '?';
      i = end + tag.length;
      from = i;
    } else if (isDigit(c) || (c === 0x2e && isDigit(sql.charCodeAt(i + 1)))) {
      if (i > 0 && isIdentChar(sql.charCodeAt(i - 1))) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && (isIdentChar(sql.charCodeAt(j)) || sql.charCodeAt(j) === 0x2e)) {
        // 1e-5 / 1E+5: the sign belongs to the number
        const d = sql.charCodeAt(j);
        j++;
        if ((d === 0x65 || d === 0x45) && (sql.charCodeAt(j) === 0x2b || sql.charCodeAt(j) === 0x2d)) j++;
      }
      out += sql.slice(from, i) + '?';
      i = j;
      from = i;
    } else i++;
  }
  return from === 0 ? sql : out + sql.slice(from);
}
