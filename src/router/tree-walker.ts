// Walks a statement's whole parse tree (CTEs, subqueries, FROM, WHERE, defaults …) for what makes a read not a read.
import { field, isObject, list, names, str, type Fields } from './ast.js';
import type { Pin, Setting, Unpin } from './classification.js';
import { isSessionAdvisoryLock, type FunctionCatalog } from './functions.js';
import { setConfigSetting } from './variable-set.js';

export interface TreeFindings {
  /** Why the statement must run on the primary; `definite` is false for "pg_proc says VOLATILE" only. */
  primary?: { reason: string; definite: boolean };
  pin?: Pin;
  unpin?: Unpin;
  /** set_config() calls whose name, value and scope are literals (or a $n value). */
  settings: Setting[];
}

// When several things force the primary, the reason shown is the most telling one.
const RANK: Record<string, number> = { 'select-into': 0, 'modifying-cte': 1, 'locking-read': 2 };
const FUNCTION_RANK = 3;
const VOLATILE_RANK = 4;

function rankOf(reason: string, definite: boolean): number {
  return RANK[reason] ?? (definite ? FUNCTION_RANK : VOLATILE_RANK);
}

function force(f: TreeFindings, reason: string, definite: boolean): void {
  if (!f.primary || rankOf(reason, definite) < rankOf(f.primary.reason, f.primary.definite)) f.primary = { reason, definite };
}

/** relpersistence 't', or an explicit pg_temp schema: the relation lives in this session only. */
export function isTempRelation(rangeVar: Fields): boolean {
  const schema = str(rangeVar.schemaname);
  return rangeVar.relpersistence === 't' || (schema !== undefined && schema.toLowerCase().startsWith('pg_temp'));
}

/** A temp relation that outlives the transaction (ON COMMIT DROP ones vanish with it and need no pin). */
export function pinsTempRelation(rangeVar: Fields, onCommit: unknown): boolean {
  return isTempRelation(rangeVar) && onCommit !== 'ONCOMMIT_DROP';
}

// SELECT … INTO: a write, and a temp table when INTO TEMP.
function onIntoClause(into: Fields, f: TreeFindings): void {
  force(f, 'select-into', true);
  if (pinsTempRelation(field(into, 'rel'), into.onCommit)) f.pin ??= 'temp-table';
}

function onFuncCall(call: Fields, catalog: FunctionCatalog, f: TreeFindings): void {
  const funcname = names(call.funcname);
  const name = (funcname[funcname.length - 1] ?? '').toLowerCase();
  const schema = funcname.length > 1 ? funcname[funcname.length - 2].toLowerCase() : 'pg_catalog';
  if (name === 'set_config' && schema === 'pg_catalog') {
    const setting = setConfigSetting(list(call.args));
    if (setting) {
      f.settings.push(setting);
      return;
    }
    // A setting the proxy cannot replay on other backends: keep the whole session where it was made.
    f.pin ??= 'untracked-setting';
    force(f, 'write-function:set_config', true);
    return;
  }
  const verdict = catalog.lookup(funcname);
  if (verdict) force(f, verdict.reason, verdict.definite);
  if (isSessionAdvisoryLock(name)) f.pin ??= 'advisory-lock';
  else if (name === 'pg_advisory_unlock_all') f.unpin ??= 'advisory-unlock-all';
}

/**
 * Iterative (a parse tree can be thousands of levels deep) walk over every node. Node tags are the only
 * capitalised keys in libpg-query's JSON, so a key names what its value is. Fields typed as one struct are not
 * wrapped in a tag (SelectStmt.larg/rarg of UNION arms, intoClause), which is why locking and INTO are
 * recognised by their field names, which only SelectStmt has.
 */
export function walkTree(root: unknown, catalog: FunctionCatalog): TreeFindings {
  const f: TreeFindings = { settings: [] };
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      for (const item of v) if (typeof item === 'object' && item !== null) stack.push(item);
      continue;
    }
    if (!isObject(v)) continue;
    for (const key in v) {
      const child = v[key];
      if (typeof child !== 'object' || child === null) continue;
      switch (key) {
        case 'FuncCall':
          onFuncCall(child as Fields, catalog, f);
          break;
        case 'lockingClause':
          if (list(child).length > 0) force(f, 'locking-read', true);
          break;
        case 'intoClause':
          onIntoClause(child as Fields, f);
          break;
        case 'InsertStmt':
        case 'UpdateStmt':
        case 'DeleteStmt':
        case 'MergeStmt':
          force(f, 'modifying-cte', true);
          break;
      }
      stack.push(child);
    }
  }
  return f;
}
