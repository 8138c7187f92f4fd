// The pure half of a reload: which keys changed, which of them apply live and which keep their running value (with the rule's reason), and what the running process refuses outright.
import type { Config } from './schema.js';
import { configKeys, type ConfigKey } from './schema-keys.js';
import { ruleFor } from './reload-rules.js';

export interface KeptKey {
  key: string;
  reason: string;
}

/** What the running process is that a file cannot change on its own. */
export interface ReloadRuntime {
  /** The node routed to as primary now. */
  primary: string | null;
  /** Worker processes running (1: one process does everything). */
  workers: number;
}

export type ReloadPlan =
  | {
      ok: true;
      /** The config to run: the new file, with every kept key at its running value. */
      config: Config;
      /** Changed keys that apply live, as concrete paths: "routing.parse_cache_size", "nodes[pg4]", "users[app].password". */
      applied: string[];
      kept: KeptKey[];
    }
  | { ok: false; error: string };

type Named = { name: string };
/** Values at a key path in one config, by concrete path ("nodes[].port" gives "nodes[pg1].port" → 5432 …). */
function valuesAt(config: unknown, path: string): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const step = (value: unknown, segments: string[], at: string): void => {
    if (segments.length === 0) {
      out.set(at, value);
      return;
    }
    const [head, ...rest] = segments as [string, ...string[]];
    if (head.endsWith('[]')) {
      const field = head.slice(0, -2);
      const list = (value as Record<string, unknown> | undefined)?.[field];
      for (const item of Array.isArray(list) ? (list as Named[]) : []) step(item, rest, `${at ? `${at}.` : ''}${field}[${item.name}]`);
      return;
    }
    const child = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[head] : undefined;
    step(child, rest, at ? `${at}.${head}` : head);
  };
  step(config, path.split('.'), '');
  return out;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Concrete paths of every change between two configs, each with the schema key it belongs to. */
export function diffConfig(current: Config, next: Config): { path: string; key: ConfigKey }[] {
  const changes: { path: string; key: ConfigKey }[] = [];
  for (const key of configKeys()) {
    if (key.kind === 'named-list') {
      const names = (c: Config) => new Set([...valuesAt(c, `${key.path}[].name`).values()] as string[]);
      const before = names(current);
      const after = names(next);
      for (const name of before) if (!after.has(name)) changes.push({ path: `${key.path}[${name}]`, key });
      for (const name of after) if (!before.has(name)) changes.push({ path: `${key.path}[${name}]`, key });
      continue;
    }
    const a = valuesAt(current, key.path);
    const b = valuesAt(next, key.path);
    // Fields of an item that was added or removed are not changes of their own: the item is.
    for (const [path, v] of a) if (b.has(path) && !same(v, b.get(path))) changes.push({ path, key });
  }
  return changes;
}

/** A copy of `obj` with the value at a dotted path (plain sections only) replaced. */
function withValue(obj: Record<string, unknown>, segments: string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = segments as [string, ...string[]];
  const copy = { ...obj };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
  } else copy[head] = withValue((obj[head] ?? {}) as Record<string, unknown>, rest, value);
  return copy;
}

/** Checks a reload against what runs now; an error names the key and why. */
function refusal(current: Config, next: Config, runtime: ReloadRuntime): string | null {
  const p = runtime.primary;
  if (p !== null) {
    const was = current.nodes.find((n) => n.name === p);
    const now = next.nodes.find((n) => n.name === p);
    if (was && !now) return `nodes: "${p}" is the current primary and cannot be removed while it is (switch over to another node first)`;
    if (was && now && (was.host !== now.host || was.port !== now.port)) return `nodes[${p}]: the current primary's host and port cannot change while it is the primary (switch over to another node first)`;
  }
  if (runtime.workers > 1 && next.pool.size < runtime.workers) {
    return `pool.size: ${next.pool.size} is less than the ${runtime.workers} worker processes running (each needs at least one server connection; restart pgsplit to run fewer workers)`;
  }
  return null;
}

/** What a reload from `current` to `next` does (see reload-rules.ts); pure. */
export function planReload(current: Config, next: Config, runtime: ReloadRuntime): ReloadPlan {
  const error = refusal(current, next, runtime);
  if (error !== null) return { ok: false, error };
  const applied: string[] = [];
  const kept: KeptKey[] = [];
  let config = next as unknown as Record<string, unknown>;
  for (const { path, key } of diffConfig(current, next)) {
    const found = ruleFor(key.path);
    // The unit test keeps every key covered; an uncovered one is kept, the safe answer, and says so.
    const rule = found?.rule ?? { live: false as const, why: 'no reload rule for this key (a bug): restart pgsplit to apply it' };
    if (rule.live) {
      applied.push(path);
      continue;
    }
    kept.push({ key: path, reason: rule.why });
    if (key.kind === 'named-list' || key.path.includes('[]')) throw new Error(`reload rule for ${key.path}: keys inside lists cannot be kept (no way to restore one item)`);
    config = withValue(config, path.split('.'), valuesAt(current, path).get(path));
  }
  return { ok: true, config: config as unknown as Config, applied, kept };
}
