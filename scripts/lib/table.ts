// Plain-text tables for the benchmark's output: padded columns, numbers right-aligned, a blank line between groups, the last column free-form.

export interface TableOptions {
  /** Indexes of right-aligned (numeric) columns. */
  right?: number[];
  /** Rows whose value in this column changes start a new group (a blank line before it). */
  groupBy?: number;
}

export function formatTable(head: string[], body: string[][], o: TableOptions = {}): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const right = new Set(o.right ?? []);
  const last = head.length - 1;
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === last ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(head), widths.map((w, i) => (i === last ? '----' : '-'.repeat(w))).join('  ')];
  let group: string | null = null;
  for (const row of body) {
    if (o.groupBy !== undefined) {
      const g = row[o.groupBy] ?? '';
      if (group !== null && g !== group) out.push('');
      group = g;
    }
    out.push(line(row));
  }
  return out;
}

/** n with `digits` decimals, or '-' for null/NaN. */
export const fmt = (n: number | null | undefined, digits: number): string => (n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits));

/** a / b, or null when either is missing or b is 0. */
export const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (a !== null && a !== undefined && b ? a / b : null);

export const mb = (bytes: number | null | undefined): string => (bytes === null || bytes === undefined ? '-' : (bytes / 1048576).toFixed(1));

export const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};
