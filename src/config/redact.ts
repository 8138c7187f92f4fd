// Masks secrets in anything pgsplit shows (GET /status) or logs: passwords, tokens, hook commands, passwords inside conninfo strings and URIs.

const MASK = '***';
/** Keys whose value is a secret wherever they appear; shown as "***" when set, "" when empty. */
const SECRET_KEYS = new Set(['password', 'token', 'secret']);
/** Shell commands: they carry ${VAR} secrets already substituted; shown as "***" when set, "" when not. */
const COMMAND_KEYS = new Set(['hook_command', 'rejoin_command', 'demote_command']);

// libpq key/value conninfo: password=value or password = 'quoted \' value' (any case; the rest of an unquoted value goes too).
const KV_PASSWORD = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/gi;
// URIs: scheme://user:password@host.
const URI_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)([^\s@/?#]*)@/gi;

/** A conninfo string (or any text that may hold one) with every password replaced by "***". */
export function maskConninfo(text: string): string {
  return text.replace(KV_PASSWORD, `$1${MASK}`).replace(URI_PASSWORD, `$1${MASK}@`);
}

export interface RedactOptions {
  /** Keep `users` (the config's user list, passwords masked); false drops it: unauthenticated readers see no user names. */
  showUsers: boolean;
}

/**
 * A deep copy of `value` safe to show: every `password`/`token`/`secret` value becomes "***" ("" stays ""), the failover
 * commands "***" (or "" when empty), every string has conninfo passwords masked, and `users` is dropped
 * unless opts.showUsers. Pure: the input is not changed.
 */
export function redact(value: unknown, opts: RedactOptions): unknown {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return maskConninfo(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      if (k === 'users' && !opts.showUsers) continue;
      // An empty secret stays "" (as the commands do): it says that none is set, which gives nothing away.
      if (SECRET_KEYS.has(k) && x !== null) out[k] = x === '' ? '' : MASK;
      else if (COMMAND_KEYS.has(k) && typeof x === 'string') out[k] = x === '' ? '' : MASK;
      else out[k] = walk(x);
    }
    return out;
  };
  return walk(value);
}
