// Routing decision for one parsed statement (a RawStmt's node), by statement type, per DESIGN.md §4.
import { defElemBool, field, fieldsOf, list, nodeTag, str, type Fields } from './ast.js';
import type { StatementInfo } from './classification.js';
import type { FunctionCatalog } from './functions.js';
import { pinsTempRelation, walkTree, type TreeFindings } from './tree-walker.js';
import { constraintsSet, readOnlyOption, variableSet, variableShow } from './variable-set.js';

// DeclareCursorStmt.options bit for WITH HOLD (CURSOR_OPT_HOLD in parsenodes.h).
const CURSOR_OPT_HOLD = 0x0020;

function write(reason: string): StatementInfo {
  return { kind: 'write', target: 'primary', reason };
}

/** Pins, unpins and set_config() settings found in the tree, onto the statement. */
function attach(f: TreeFindings, info: StatementInfo): StatementInfo {
  if (f.pin) info.pin ??= f.pin;
  if (f.unpin) info.unpin ??= f.unpin;
  if (f.settings.length > 0) info.setting ??= f.settings[0];
  return info;
}

/** A query that is a read unless its tree says otherwise (SELECT, VALUES, TABLE, and the query inside COPY/DECLARE …). */
function query(node: unknown, catalog: FunctionCatalog, readReason: string): StatementInfo {
  const f = walkTree(node, catalog);
  // Several set_config() calls in one statement are more than one setting can carry: treat as untracked.
  if (f.settings.length > 1) {
    f.pin ??= 'untracked-setting';
    return attach(f, write('write-function:set_config'));
  }
  if (f.primary) return attach(f, write(f.primary.reason));
  if (f.settings.length === 1) return attach(f, { kind: 'set', target: 'session', reason: 'set-config' });
  return attach(f, { kind: 'read', target: 'replica', reason: readReason });
}

/** A statement that writes whatever its tree holds; the tree still matters for pins and settings. */
function modify(node: unknown, catalog: FunctionCatalog, reason: string): StatementInfo {
  const f = walkTree(node, catalog);
  if (f.settings.length > 1) f.pin ??= 'untracked-setting';
  return attach(f, write(reason));
}

function explain(f: Fields, catalog: FunctionCatalog): StatementInfo {
  const analyze = list(f.options).some((o) => {
    const d = fieldsOf(o);
    return d.defname === 'analyze' && defElemBool(d.arg) === true;
  });
  // Without ANALYZE nothing is executed, and PostgreSQL skips the read-only check for plans of writes.
  if (!analyze) return { kind: 'read', target: 'replica', reason: 'explain' };
  const inner = classifyStmt(f.query, catalog);
  if (inner.target === 'replica') return { ...inner, kind: 'read', reason: 'explain' };
  return { ...inner, kind: 'write', target: 'primary', reason: 'explain-analyze-write' };
}

function copy(f: Fields, catalog: FunctionCatalog): StatementInfo {
  if (f.is_from === true) return write('copy-from');
  // A server-side file or program: it must land on the node the user thinks of as the database, the primary.
  if (f.is_program === true || str(f.filename) !== undefined) return write('copy-to-file');
  if (f.query !== undefined) {
    const inner = query(f.query, catalog, 'copy-to');
    return inner.target === 'replica' ? { ...inner, kind: 'read' } : inner.target === 'session' ? { ...inner, kind: 'read', target: 'primary' } : inner;
  }
  return { kind: 'read', target: 'replica', reason: 'copy-to' };
}

function declareCursor(f: Fields, catalog: FunctionCatalog): StatementInfo {
  const portalName = str(f.portalname) ?? '';
  const inner = classifyStmt(f.query, catalog);
  const hold = typeof f.options === 'number' && (f.options & CURSOR_OPT_HOLD) !== 0;
  // WITH HOLD outlives the transaction on its backend: the session is pinned to the primary, so the cursor is made there.
  if (hold) return { ...inner, kind: 'declare', target: 'primary', reason: inner.target === 'replica' ? 'hold-cursor' : inner.reason, pin: 'hold-cursor', portalName };
  if (inner.target === 'replica') return { ...inner, kind: 'declare', reason: 'declare-cursor', portalName };
  return { ...inner, kind: 'declare', target: 'primary', portalName };
}

function prepare(f: Fields, catalog: FunctionCatalog): StatementInfo {
  const inner = classifyStmt(f.query, catalog);
  const preparedTarget = inner.target === 'replica' ? 'replica' : 'primary';
  const info: StatementInfo = { kind: 'prepare', target: 'session', reason: 'prepare', prepareName: str(f.name) ?? '', preparedTarget };
  if (preparedTarget === 'primary') info.pin = 'prepared-write';
  return info;
}

function execute(f: Fields, catalog: FunctionCatalog): StatementInfo {
  const info: StatementInfo = { kind: 'execute', target: 'session', reason: 'execute', executeName: str(f.name) ?? '' };
  // Parameters are expressions too: EXECUTE p(nextval('s')) writes whatever p is.
  const params = walkTree(f.params, catalog);
  if (params.primary) {
    info.target = 'primary';
    info.reason = params.primary.reason;
  }
  return attach(params, info);
}

function transaction(f: Fields): StatementInfo {
  switch (str(f.kind)) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START': {
      const readOnly = readOnlyOption(list(f.options));
      if (readOnly) return { kind: 'begin', target: 'replica', reason: 'txn-begin-read-only', readOnly };
      return readOnly === false ? { kind: 'begin', target: 'primary', reason: 'txn-begin', readOnly } : { kind: 'begin', target: 'primary', reason: 'txn-begin' };
    }
    case 'TRANS_STMT_COMMIT':
      return f.chain === true ? { kind: 'commit', target: 'primary', reason: 'txn-end', chain: true } : { kind: 'commit', target: 'primary', reason: 'txn-end' };
    case 'TRANS_STMT_ROLLBACK':
      return f.chain === true ? { kind: 'rollback', target: 'primary', reason: 'txn-end', chain: true } : { kind: 'rollback', target: 'primary', reason: 'txn-end' };
    case 'TRANS_STMT_SAVEPOINT':
      return { kind: 'savepoint', target: 'primary', reason: 'savepoint', savepointName: str(f.savepoint_name) ?? '' };
    case 'TRANS_STMT_RELEASE':
      return { kind: 'savepoint', target: 'primary', reason: 'release-savepoint', savepointName: str(f.savepoint_name) ?? '' };
    case 'TRANS_STMT_ROLLBACK_TO':
      return { kind: 'savepoint', target: 'primary', reason: 'rollback-to-savepoint', savepointName: str(f.savepoint_name) ?? '' };
    case 'TRANS_STMT_PREPARE':
      // PREPARE TRANSACTION ends the transaction on this backend, like COMMIT does.
      return { kind: 'commit', target: 'primary', reason: 'prepare-transaction' };
    case 'TRANS_STMT_COMMIT_PREPARED':
      return write('commit-prepared');
    case 'TRANS_STMT_ROLLBACK_PREPARED':
      return write('rollback-prepared');
    default:
      return { kind: 'other', target: 'primary', reason: 'txn-other' };
  }
}

const DISCARD = {
  DISCARD_ALL: ['all', 'discard-all'],
  DISCARD_PLANS: ['plans', undefined],
  DISCARD_SEQUENCES: ['sequences', undefined],
  DISCARD_TEMP: ['temp', 'discard-temp'],
} as const;

function discard(f: Fields): StatementInfo {
  const entry = DISCARD[str(f.target) as keyof typeof DISCARD] ?? DISCARD.DISCARD_ALL;
  const info: StatementInfo = { kind: 'discard', target: 'session', reason: 'discard', discard: entry[0] };
  if (entry[1]) info.unpin = entry[1];
  return info;
}

// Temp relations from DDL: CREATE TEMP TABLE / VIEW / SEQUENCE, CREATE TEMP TABLE … AS.
function ddlPin(tag: string, f: Fields): StatementInfo {
  const info = write(tag === 'CreateTableAsStmt' && f.objtype !== 'OBJECT_MATVIEW' ? 'select-into' : 'ddl');
  const rel =
    tag === 'CreateStmt' ? [field(f, 'relation'), f.oncommit]
    : tag === 'ViewStmt' ? [field(f, 'view'), undefined]
    : tag === 'CreateSeqStmt' ? [field(f, 'sequence'), undefined]
    : tag === 'CreateTableAsStmt' ? [field(field(f, 'into'), 'rel'), field(f, 'into').onCommit]
    : undefined;
  if (rel && pinsTempRelation(rel[0] as Fields, rel[1])) info.pin = 'temp-table';
  return info;
}

// Heuristic for DO blocks, whose body is PL/pgSQL text the SQL parser does not look into.
function doBlock(f: Fields): StatementInfo {
  const info = write('do');
  const body = list(f.args)
    .map((a) => {
      const d = fieldsOf(a);
      return d.defname === 'as' ? (str(fieldsOf(d.arg).sval) ?? '') : '';
    })
    .join('\n');
  if (/\bcreate\s+(?:(?:global|local)\s+)?temp(?:orary)?\b|\bpg_temp\./i.test(body)) info.pin = 'temp-table';
  else if (/\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i.test(body)) info.pin = 'advisory-lock';
  else if (/\blisten\s+["\w]/i.test(body)) info.pin = 'listen';
  else if (/\bset_config\s*\(/i.test(body)) info.pin = 'untracked-setting';
  return info;
}

/** Where one statement goes in a fresh session, and what it does to the session. */
export function classifyStmt(node: unknown, catalog: FunctionCatalog): StatementInfo {
  const tag = nodeTag(node) ?? '';
  const f = fieldsOf(node);
  switch (tag) {
    case 'SelectStmt':
      return query(node, catalog, 'select');
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      return modify(node, catalog, 'write');
    case 'TruncateStmt':
      return write('write');
    case 'ExplainStmt':
      return explain(f, catalog);
    case 'CopyStmt':
      return copy(f, catalog);
    case 'DeclareCursorStmt':
      return declareCursor(f, catalog);
    case 'FetchStmt':
      return { kind: 'fetch-close', target: 'session', reason: f.ismove === true ? 'move' : 'fetch', portalName: str(f.portalname) ?? '' };
    case 'ClosePortalStmt': {
      const name = str(f.portalname);
      return name === undefined ? { kind: 'fetch-close', target: 'session', reason: 'close', portalName: null, unpin: 'close-all' } : { kind: 'fetch-close', target: 'session', reason: 'close', portalName: name };
    }
    case 'PrepareStmt':
      return prepare(f, catalog);
    case 'ExecuteStmt':
      return execute(f, catalog);
    case 'DeallocateStmt':
      return f.isall === true || str(f.name) === undefined
        ? { kind: 'deallocate', target: 'session', reason: 'deallocate', deallocateName: null, unpin: 'deallocate-all' }
        : { kind: 'deallocate', target: 'session', reason: 'deallocate', deallocateName: str(f.name) };
    case 'TransactionStmt':
      return transaction(f);
    case 'VariableSetStmt':
      return variableSet(f);
    case 'VariableShowStmt':
      return variableShow(f);
    case 'ConstraintsSetStmt':
      return constraintsSet(f);
    case 'DiscardStmt':
      return discard(f);
    case 'ListenStmt':
      return { kind: 'listen', target: 'primary', reason: 'listen', pin: 'listen', channel: str(f.conditionname) ?? '' };
    case 'UnlistenStmt': {
      const channel = str(f.conditionname);
      return channel === undefined ? { kind: 'unlisten', target: 'primary', reason: 'unlisten', channel: null, unpin: 'unlisten-all' } : { kind: 'unlisten', target: 'primary', reason: 'unlisten', channel };
    }
    case 'NotifyStmt':
      return write('notify');
    case 'CallStmt':
      return modify(f.funccall, catalog, 'call');
    case 'DoStmt':
      return doBlock(f);
    case 'LockStmt':
      return write('lock');
    case 'VacuumStmt':
    case 'ClusterStmt':
    case 'ReindexStmt':
    case 'CheckPointStmt':
      return write('maintenance');
    case 'LoadStmt':
      // LOAD 'library' changes the backend it runs on; every backend of the session should have it.
      return { kind: 'other', target: 'session', reason: 'load' };
    case 'CreateStmt':
    case 'ViewStmt':
    case 'CreateSeqStmt':
    case 'CreateTableAsStmt':
      return ddlPin(tag, f);
    default:
      // Every other utility statement changes the catalog or the cluster: DDL, GRANT, COMMENT, ALTER SYSTEM …
      return write('ddl');
  }
}
