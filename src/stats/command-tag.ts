// Rows a statement returned or touched, read from the tag of its CommandComplete ("SELECT 5", "INSERT 0 5", "UPDATE 3"), without making a string of it.

// Tags whose last number is a row count (PostgreSQL's CMDTAG_ROWCOUNT ones); CREATE TABLE AS reports itself as SELECT n.
const COUNTED = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'FETCH', 'MOVE', 'COPY'].map((w) => Buffer.from(w, 'latin1'));

const SPACE = 0x20;

function startsWithWord(body: Buffer, word: Buffer): boolean {
  if (body.length <= word.length || body[word.length] !== SPACE) return false;
  for (let i = 0; i < word.length; i++) if (body[i] !== word[i]) return false;
  return true;
}

/** The row count in a CommandComplete body (the tag and its NUL); 0 for tags that carry none (BEGIN, CREATE TABLE …). */
export function rowsFromCommandTag(body: Buffer): number {
  let end = body.length;
  if (end > 0 && body[end - 1] === 0) end--;
  let i = end;
  let n = 0;
  let scale = 1;
  while (i > 0) {
    const c = body[i - 1];
    if (c < 0x30 || c > 0x39) break;
    n += (c - 0x30) * scale;
    scale *= 10;
    i--;
  }
  if (i === end || i === 0 || body[i - 1] !== SPACE) return 0;
  for (const word of COUNTED) if (startsWithWord(body, word)) return n;
  return 0;
}
