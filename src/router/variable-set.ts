// SET / RESET / SHOW (VariableSetStmt, VariableShowStmt) and set_config(): what a session must record, and pgsplit.* interception.
import { parseDuration } from '../config/units.js';
import { constant, constantBool, constantText, fieldsOf, list, str, type Fields } from './ast.js';
import type { Setting, StatementInfo } from './classification.js';

// SQLSTATEs PostgreSQL itself uses for the same mistakes, so clients see familiar errors from the proxy.
const UNDEFINED_OBJECT = '42704';
const INVALID_PARAMETER_VALUE = '22023';

const ROUTES = ['primary', 'replica', 'auto'] as const;

/** The value text of SET's argument list, flattened like PostgreSQL does for SHOW: 'a', 'b' -> "a, b". */
function argsText(args: unknown[]): string {
  return args
    .map((a) => {
      const c = constant(a);
      if (c) return constantText(c) ?? '';
      // SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE: the literal is what matters; the session replays `text`.
      const inner = constant(fieldsOf(a).arg);
      return inner ? (constantText(inner) ?? '') : '';
    })
    .join(', ');
}

/** SET TRANSACTION / BEGIN option lists: the last transaction_read_only wins, as in PostgreSQL. */
export function readOnlyOption(options: unknown[]): boolean | undefined {
  let readOnly: boolean | undefined;
  for (const o of options) {
    const d = fieldsOf(o);
    if (d.defname === 'transaction_read_only') readOnly = constantBool(constant(d.arg));
  }
  return readOnly;
}

// SESSION CHARACTERISTICS modes as words, for display: "isolation level read committed, read only".
function modesText(options: unknown[]): string {
  return options
    .map((o) => {
      const d = fieldsOf(o);
      const c = constant(d.arg);
      const v = c ? constantText(c) : null;
      if (d.defname === 'transaction_isolation') return `isolation level ${v ?? ''}`;
      if (d.defname === 'transaction_read_only') return constantBool(c) ? 'read only' : 'read write';
      if (d.defname === 'transaction_deferrable') return constantBool(c) ? 'deferrable' : 'not deferrable';
      return String(d.defname);
    })
    .join(', ');
}

/** SET/RESET of pgsplit.* never reaches PostgreSQL: the proxy applies it and answers with CommandComplete itself. */
export function pgsplitSetting(name: string, value: string | null, local: boolean, kind: 'set' | 'reset'): StatementInfo {
  const info: StatementInfo = { kind, target: 'session', reason: 'intercept', intercept: true, setting: { name, value, local } };
  if (name === 'pgsplit.route') {
    const v = value?.toLowerCase();
    if (v === undefined) info.routeHint = 'auto';
    else if ((ROUTES as readonly string[]).includes(v)) info.routeHint = v as (typeof ROUTES)[number];
    else info.interceptError = { sqlstate: INVALID_PARAMETER_VALUE, message: `invalid value for parameter "pgsplit.route": "${value}" (expected primary, replica or auto)` };
  } else if (name === 'pgsplit.max_lag') {
    if (value === null) info.maxLagMs = null;
    else {
      try {
        info.maxLagMs = parseDuration(value);
      } catch {
        info.interceptError = { sqlstate: INVALID_PARAMETER_VALUE, message: `invalid value for parameter "pgsplit.max_lag": "${value}" (expected a duration such as '500ms' or '2s')` };
      }
    }
  } else if (name === 'pgsplit.read_tags') {
    const tags = value === null ? null : parseTagList(value);
    if (tags === undefined) info.interceptError = { sqlstate: INVALID_PARAMETER_VALUE, message: `invalid value for parameter "pgsplit.read_tags": "${value}" (expected tags separated by commas, e.g. 'analytics' or 'a,b')` };
    else info.readTags = tags;
  } else {
    info.interceptError = { sqlstate: UNDEFINED_OBJECT, message: `unrecognized configuration parameter "${name}" (${KNOWN})` };
  }
  return info;
}

const KNOWN = 'pgsplit knows pgsplit.route, pgsplit.max_lag and pgsplit.read_tags';
export const PGSPLIT_SETTINGS: readonly string[] = ['pgsplit.route', 'pgsplit.max_lag', 'pgsplit.read_tags'];

/** 'a, b' → ['a', 'b']; '' → [] (no tags: ordinary replicas); undefined when a tag has other characters. */
export function parseTagList(value: string): string[] | undefined {
  const tags = value.split(',').map((t) => t.trim()).filter((t) => t !== '');
  return tags.every((t) => /^[A-Za-z0-9_.-]+$/.test(t)) ? tags : undefined;
}

// GUCs that only describe the current transaction; setting them is SET TRANSACTION in another spelling.
const TRANSACTION_GUCS = new Set(['transaction_read_only', 'transaction_isolation', 'transaction_deferrable']);

export function variableSet(f: Fields): StatementInfo {
  const kind = str(f.kind);
  const name = (str(f.name) ?? '').toLowerCase();
  const local = f.is_local === true;
  const args = list(f.args);

  if (kind === 'VAR_SET_MULTI') {
    if (name === 'transaction') {
      const readOnly = readOnlyOption(args);
      const info: StatementInfo = readOnly
        ? { kind: 'set-transaction', target: 'replica', reason: 'set-transaction-read-only', readOnly }
        : { kind: 'set-transaction', target: 'primary', reason: 'set-transaction' };
      if (readOnly === false) info.readOnly = false;
      return info;
    }
    if (name === 'transaction snapshot') return { kind: 'set-transaction', target: 'primary', reason: 'set-transaction-snapshot' };
    // SET SESSION CHARACTERISTICS AS TRANSACTION …: the session defaults (default_transaction_*), held everywhere.
    const info: StatementInfo = { kind: 'set', target: 'session', reason: 'set', setting: { name: 'session characteristics', value: modesText(args), local: false } };
    const readOnly = readOnlyOption(args);
    if (readOnly !== undefined) info.readOnly = readOnly;
    return info;
  }

  if (kind === 'VAR_RESET_ALL') return { kind: 'reset', target: 'session', reason: 'reset', setting: { name: 'all', value: null, local: false } };

  const reset = kind === 'VAR_RESET';
  // SET x TO DEFAULT is RESET x; SET x FROM CURRENT keeps the current value, which the proxy cannot know: record nothing.
  const value = reset || kind === 'VAR_SET_DEFAULT' ? null : kind === 'VAR_SET_CURRENT' ? undefined : argsText(args);
  if (name.startsWith('pgsplit.')) return pgsplitSetting(name, value ?? null, local, reset ? 'reset' : 'set');

  if (TRANSACTION_GUCS.has(name)) {
    const info: StatementInfo = { kind: 'set-transaction', target: 'primary', reason: 'set-transaction' };
    if (name === 'transaction_read_only' && value != null) {
      const readOnly = constantBool({ kind: 'string', value });
      if (readOnly !== undefined) info.readOnly = readOnly;
      if (readOnly) {
        info.target = 'replica';
        info.reason = 'set-transaction-read-only';
      }
    }
    return info;
  }

  const info: StatementInfo = {
    kind: reset ? 'reset' : 'set',
    target: 'session',
    reason: reset ? 'reset' : local ? 'set-local' : 'set',
  };
  if (value !== undefined) info.setting = { name, value, local };
  if (name === 'default_transaction_read_only' && value !== undefined) {
    // RESET goes back to the server default, which the proxy assumes is off (a hot standby forces it on itself).
    const readOnly = value === null ? false : constantBool({ kind: 'string', value });
    if (readOnly !== undefined) info.readOnly = readOnly;
  }
  return info;
}

/**
 * Settings that say whether the server takes writes. A standby always answers "on" for them, so they are asked of the
 * primary: clients look at them to find a writable server (pgJDBC's targetServerType=primary runs
 * SHOW transaction_read_only at login), and through pgsplit the answer must be the one server it stands for.
 */
const WRITABILITY_SETTINGS = new Set(['transaction_read_only', 'in_hot_standby']);

export function variableShow(f: Fields): StatementInfo {
  const name = (str(f.name) ?? '').toLowerCase();
  if (WRITABILITY_SETTINGS.has(name)) return { kind: 'read', target: 'primary', reason: 'show-writability' };
  if (!name.startsWith('pgsplit.')) return { kind: 'read', target: 'replica', reason: 'show' };
  const info: StatementInfo = { kind: 'read', target: 'session', reason: 'intercept', intercept: true, show: name };
  if (!PGSPLIT_SETTINGS.includes(name)) {
    info.interceptError = { sqlstate: UNDEFINED_OBJECT, message: `unrecognized configuration parameter "${name}" (${KNOWN})` };
  }
  return info;
}

/** SET CONSTRAINTS …: transaction-scoped like SET LOCAL, so it travels with the transaction. */
export function constraintsSet(f: Fields): StatementInfo {
  const which = list(f.constraints).length === 0 ? 'all' : 'some';
  const value = `${which} ${f.deferred === true ? 'deferred' : 'immediate'}`;
  return { kind: 'set', target: 'session', reason: 'set-local', setting: { name: 'constraints', value, local: true } };
}

/**
 * set_config(name, value, is_local) as a setting the session can replay; undefined when the name or scope is
 * computed at run time, which the proxy cannot follow (the caller then pins the session to the primary).
 */
export function setConfigSetting(args: unknown[]): Setting | undefined {
  if (args.length !== 3) return undefined;
  const name = constant(args[0]);
  if (name?.kind !== 'string') return undefined;
  const local = constantBool(constant(args[2]));
  if (local === undefined) return undefined;
  const v = constant(args[1]);
  const setting: Setting = { name: name.value.toLowerCase(), value: null, local };
  if (v === undefined) return undefined; // an expression: known only when it runs
  if (v.kind === 'param') setting.valueParam = v.number;
  else if (v.kind === 'boolean') setting.value = v.value ? 'true' : 'false';
  else if (v.kind !== 'null') setting.value = v.value;
  return setting;
}
