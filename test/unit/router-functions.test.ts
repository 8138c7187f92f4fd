// FunctionCatalog: built-in side-effect functions, VOLATILE user functions from pg_proc, and the config overrides.
import { describe, expect, it } from 'vitest';
import { builtinEffect, FunctionCatalog, isSessionAdvisoryLock, VOLATILE_FUNCTIONS_SQL, volatileFunctionNames } from '../../src/router/functions.js';

const lookup = (catalog: FunctionCatalog, name: string) => catalog.lookup(name.split('.'));

describe('built-in functions', () => {
  const plain = new FunctionCatalog();

  it.each([
    'nextval', 'setval', 'currval', 'lastval', 'txid_current', 'pg_current_xact_id', 'pg_notify', 'set_config',
    'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_unlock', 'pg_advisory_unlock_all', 'pg_advisory_xact_lock',
    'pg_advisory_xact_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_xact_lock_shared',
    'lo_create', 'lo_creat', 'lo_import', 'lo_export', 'lo_unlink', 'lo_open', 'lo_put', 'lo_from_bytea', 'loread', 'lowrite',
    'pg_logical_emit_message', 'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot', 'pg_drop_replication_slot',
    'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal', 'pg_promote',
    'dblink_exec', 'dblink_connect', 'pg_stat_reset', 'pg_stat_reset_shared', 'pg_stat_reset_single_table_counters',
    'pg_stat_statements_reset', 'pg_export_snapshot', 'pg_replication_origin_create', 'brin_summarize_new_values',
  ])('%s is a write', (name) => {
    expect(lookup(plain, name)).toEqual({ reason: `write-function:${name}`, definite: true });
  });

  it.each(['pg_current_wal_lsn', 'pg_current_wal_insert_lsn', 'pg_walfile_name'])('%s needs the primary', (name) => {
    expect(lookup(plain, name)).toEqual({ reason: `primary-function:${name}`, definite: true });
  });

  it.each([
    'pg_sleep', 'pg_sleep_for', 'now', 'random', 'clock_timestamp', 'current_setting', 'txid_current_snapshot',
    'txid_current_if_assigned', 'pg_current_xact_id_if_assigned', 'pg_is_in_recovery', 'pg_last_wal_replay_lsn',
    'gen_random_uuid', 'uuid_generate_v4', 'pg_get_serial_sequence', 'count', 'lower',
  ])('%s is a read', (name) => {
    expect(lookup(plain, name)).toBeUndefined();
  });

  it('ignores case and the pg_catalog schema; matches built-ins in any schema', () => {
    expect(lookup(plain, 'NextVal')?.reason).toBe('write-function:nextval');
    expect(lookup(plain, 'pg_catalog.nextval')?.reason).toBe('write-function:nextval');
    expect(lookup(plain, 'PG_CATALOG.PG_ADVISORY_LOCK')?.reason).toBe('write-function:pg_advisory_lock');
    expect(lookup(plain, 'ext.dblink_exec')?.reason).toBe('write-function:dblink_exec');
  });

  it('knows which advisory locks outlive the statement', () => {
    expect(isSessionAdvisoryLock('pg_advisory_lock')).toBe(true);
    expect(isSessionAdvisoryLock('PG_TRY_ADVISORY_LOCK_SHARED')).toBe(true);
    expect(isSessionAdvisoryLock('pg_advisory_xact_lock')).toBe(false);
    expect(isSessionAdvisoryLock('pg_advisory_unlock')).toBe(false);
    expect(builtinEffect('pg_advisory_xact_lock')).toBe('session');
    expect(builtinEffect('pg_switch_wal')).toBe('write');
  });
});

describe('VOLATILE user functions and overrides', () => {
  it('matches unqualified calls against any schema, qualified calls against their own', () => {
    const c = new FunctionCatalog({ volatile: ['public.f', 'Audit.Log'] });
    expect(lookup(c, 'f')).toEqual({ reason: 'volatile-function:public.f', definite: false });
    expect(lookup(c, 'public.f')?.reason).toBe('volatile-function:public.f');
    expect(lookup(c, 'other.f')).toBeUndefined();
    expect(lookup(c, 'LOG')?.reason).toBe('volatile-function:audit.log');
    expect(lookup(c, 'pg_catalog.f')).toBeUndefined();
    expect(lookup(c, 'db.public.f')?.reason).toBe('volatile-function:public.f');
  });

  it('a schema-less volatile name matches every schema', () => {
    const c = new FunctionCatalog({ volatile: ['f'] });
    expect(lookup(c, 'x.f')?.reason).toBe('volatile-function:f');
    expect(lookup(c, 'f')?.reason).toBe('volatile-function:f');
  });

  it('read_only_functions override volatile (and built-ins); write_functions win over both', () => {
    const c = new FunctionCatalog({ volatile: ['public.f', 'public.g', 'public.h'], readOnly: ['f', 'public.g', 'nextval', 'both'], write: ['public.both', 'k'] });
    expect(lookup(c, 'f')).toBeUndefined();
    expect(lookup(c, 'public.g')).toBeUndefined();
    expect(lookup(c, 'g')).toBeUndefined(); // the only volatile g is covered
    expect(lookup(c, 'h')?.reason).toBe('volatile-function:public.h');
    expect(lookup(c, 'nextval')).toBeUndefined();
    expect(lookup(c, 'both')?.reason).toBe('write-function:both');
    expect(lookup(c, 'public.both')?.reason).toBe('write-function:public.both');
    expect(lookup(c, 'any.k')?.reason).toBe('write-function:any.k');
    expect(lookup(c, 'k')).toEqual({ reason: 'write-function:k', definite: true });
  });

  it('a qualified read-only entry does not cover another schema reachable by an unqualified call', () => {
    const c = new FunctionCatalog({ volatile: ['public.f', 'audit.f'], readOnly: ['public.f'] });
    expect(lookup(c, 'public.f')).toBeUndefined();
    expect(lookup(c, 'f')?.reason).toBe('volatile-function:audit.f');
  });

  it('withVolatile keeps the overrides', () => {
    const c = new FunctionCatalog({ readOnly: ['f'], write: ['w'] }).withVolatile(['public.f', 'public.v']);
    expect(c.volatileCount).toBe(2);
    expect(lookup(c, 'f')).toBeUndefined();
    expect(lookup(c, 'v')?.reason).toBe('volatile-function:public.v');
    expect(lookup(c, 'w')?.reason).toBe('write-function:w');
  });

  it('VOLATILE_FUNCTIONS_SQL selects schema and name of volatile non-catalog functions', () => {
    expect(VOLATILE_FUNCTIONS_SQL).toMatch(/SELECT DISTINCT n\.nspname, p\.proname/);
    expect(VOLATILE_FUNCTIONS_SQL).toMatch(/provolatile = 'v'/);
    expect(VOLATILE_FUNCTIONS_SQL).toMatch(/NOT IN \('pg_catalog', 'information_schema'\)/);
    expect(volatileFunctionNames([{ nspname: 'public', proname: 'f' }])).toEqual(['public.f']);
  });
});
