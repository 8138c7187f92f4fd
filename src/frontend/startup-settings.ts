// A client's startup parameters as session settings: servers are opened with only user and database, and each client's own parameters are applied as SETs.
import { errors } from '../errors.js';

export interface StartupSetting {
  key: string;
  sql: string;
}

// Parameters of the startup packet that are not settings.
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication']);

function literal(v: string): string {
  // Dollar quoting means the same whatever standard_conforming_strings says.
  for (let i = 0; ; i++) {
    const tag = `$p${i === 0 ? '' : i}$`;
    if (!v.includes(tag)) return `${tag}${v}${tag}`;
  }
}

export function setConfigSql(name: string, value: string): string {
  return `SELECT pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`;
}

/** The words of an `options` startup parameter (spaces separate them; a backslash escapes the next character). */
export function optionWords(options: string): string[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i];
    if (c === '\\' && i + 1 < options.length) {
      cur += options[++i];
      has = true;
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) words.push(cur);
  return words;
}

/**
 * The settings a client asked for at startup, in order, leaving out those a fresh server already has
 * (`serverHas`: its ParameterStatus values, e.g. client_encoding UTF8). `options` may hold `-c name=value`
 * and `--name=value`; anything else there cannot be applied to a shared server and is refused (0A000).
 */
export function startupSettings(params: ReadonlyMap<string, string>, serverHas: ReadonlyMap<string, string>): StartupSetting[] {
  const out = new Map<string, string>();
  for (const [k, v] of params) {
    if (NOT_SETTINGS.has(k)) continue;
    out.set(k.toLowerCase(), v);
  }
  const words = optionWords(params.get('options') ?? '');
  for (let i = 0; i < words.length; i++) {
    let w = words[i];
    if (w === '-c' && i + 1 < words.length) w = words[++i];
    else if (w.startsWith('-c')) w = w.slice(2);
    else if (w.startsWith('--')) w = w.slice(2);
    else throw errors.featureNotSupported(`the startup option "${w}" (only -c name=value and --name=value can be applied to pooled servers)`);
    const eq = w.indexOf('=');
    if (eq <= 0) throw errors.featureNotSupported(`the startup option "${w}" (expected name=value)`);
    out.set(w.slice(0, eq).toLowerCase().replace(/-/g, '_'), w.slice(eq + 1));
  }
  const list: StartupSetting[] = [];
  for (const [key, value] of out) {
    if (serverHas.get(key) === value) continue;
    list.push({ key, sql: setConfigSql(key, value) });
  }
  return list;
}
