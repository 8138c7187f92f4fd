// Reads pgsplit.yaml: YAML parsing, ${VAR} interpolation, validation and user-facing error reporting.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import type { ZodIssue } from 'zod';
import { configSchema, type Config } from './schema.js';
import { redact, type RedactOptions } from './redact.js';

export type { Config } from './schema.js';
export { maskConninfo, redact, type RedactOptions } from './redact.js';

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(issues.map((i) => `config: ${i.path}: ${i.message}`).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

type Path = (string | number)[];

function formatPath(path: Path): string {
  if (path.length === 0) return '(root)';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : /^[A-Za-z_][\w-]*$/.test(p) ? (i === 0 ? p : `.${p}`) : `[${JSON.stringify(p)}]`))
    .join('');
}

// Same grammar as docker-compose: ${NAME}, ${NAME:-default} (default also used when NAME is empty), $${ for a literal ${.
const VAR_RE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g;

function interpolate(value: unknown, env: Record<string, string | undefined>, path: Path, issues: ConfigIssue[], failed: Set<string>): unknown {
  if (typeof value === 'string') {
    const at = formatPath(path);
    return value.replace(VAR_RE, (match, name: string | undefined, def: string | undefined) => {
      if (match === '$${') return '${';
      if (name === undefined) {
        issues.push({ path: at, message: 'malformed variable reference: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)' });
      } else {
        const v = env[name];
        if (def !== undefined && (v === undefined || v === '')) return def;
        if (v !== undefined) return v;
        issues.push({ path: at, message: `environment variable ${name} is not set (use \${${name}:-default} to provide a fallback)` });
      }
      failed.add(at);
      return match;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], issues, failed));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // An empty YAML value (`listen:` with every child commented out) means "use the defaults", not null.
      if (v !== null) out[k] = interpolate(v, env, [...path, k], issues, failed);
    }
    return out;
  }
  return value;
}

function zodIssues(issues: ZodIssue[]): ConfigIssue[] {
  return issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? i.keys.map((k) => ({ path: formatPath([...i.path, k]), message: i.message }))
      : [{ path: formatPath(i.path), message: i.message }],
  );
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object') {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

export function parseConfig(text: string, env: Record<string, string | undefined> = process.env, source = '<config>'): Config {
  const lines = new LineCounter();
  // prettyErrors would quote the offending source line, which may well contain a password.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        return { path: `${source}:${line}:${col}`, message: `invalid YAML: ${e.message}` };
      }),
    );
  }

  const issues: ConfigIssue[] = [];
  const failed = new Set<string>();
  const raw = interpolate(doc.toJS() ?? {}, env, [], issues, failed);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const seen = new Set(issues.map((i) => `${i.path}\0${i.message}`));
    for (const i of zodIssues(result.error.issues)) {
      const key = `${i.path}\0${i.message}`;
      // A value whose variable is unset would only produce a second, confusing error about "${VAR}".
      if (failed.has(i.path) || seen.has(key)) continue;
      seen.add(key);
      issues.push(i);
    }
  }
  if (issues.length > 0 || !result.success) throw new ConfigError(issues);
  return deepFreeze(result.data);
}

export function loadConfig(file: string, env: Record<string, string | undefined> = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'file not found' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new ConfigError([{ path: file, message: `cannot read config file: ${why}` }]);
  }
  return parseConfig(text, env, file);
}

/**
 * A copy safe to log or serve on /status: passwords, tokens and failover commands masked, conninfo passwords
 * masked, and the user list kept only with showUsers (default true). See config/redact.ts.
 */
export function redactConfig(c: Config, opts: RedactOptions = { showUsers: true }): unknown {
  return redact(c, opts);
}
