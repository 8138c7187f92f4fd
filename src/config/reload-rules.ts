// What a reload does with each config key: applied live (and how) or kept until a restart (and why); one table for SIGHUP, POST /reload and the README.
//
// A rule's key is a path from config/schema-keys.ts, or "section.*" for every key under a section. A unit test
// walks the schema and fails when a key has no rule, so a new key must say here what a reload does with it.

export type ReloadRule = { live: true; how: string } | { live: false; why: string };

const live = (how: string): ReloadRule => ({ live: true, how });
const restart = (why: string): ReloadRule => ({ live: false, why });

export const RELOAD_RULES: Readonly<Record<string, ReloadRule>> = Object.freeze({
  'listen.host': restart('the client socket is bound once, at start'),
  'listen.port': restart('the client socket is bound once, at start'),
  'listen.max_client_connections': live('checked at every accept; clients already over a lowered bound stay'),
  'admin.host': restart('the admin HTTP server is bound once, at start'),
  'admin.port': restart('the admin HTTP server is bound once, at start'),
  'admin.enabled': restart('the admin HTTP server is started (or not) once, at start'),
  'admin.auth.*': live('checked on every admin request and sent to peers from the next one'),
  'admin.users': live('admin console logins after the reload (sessions already in go on)'),
  'admin.users[].password': live('admin console logins after the reload'),
  'admin.pause_timeout': live('the next PAUSE in the admin console'),
  'admin.metrics_port': restart('the metrics HTTP server is bound once, at start'),
  'admin.metrics_host': restart('the metrics HTTP server is bound once, at start'),
  'tls.*': live('certificate files re-read (a file that cannot be loaded rejects the reload); new client connections use them'),
  'server_tls.*': live('files re-read; pools of the nodes it covers are drained, monitor probes reconnect; new server connections use it'),
  'limits.max_message_size': live('sessions that start after the reload'),
  'limits.client_login_timeout': live('connections accepted after the reload'),
  'limits.client_idle_timeout': live('every session (the idle sweep is re-armed)'),
  'limits.idle_transaction_timeout': live('every session (the idle sweep is re-armed)'),
  'limits.max_pipeline': live('every session, at its next message'),
  'limits.max_prepared_statements': live('every session, at its next Parse'),
  'limits.max_prepared_bytes': live('every session, at its next Parse; every server connection, at its next checkout'),
  'limits.max_session_settings': live('every session, at its next SET'),
  'limits.max_session_settings_bytes': live('every session, at its next SET'),
  'pool.mode': live('sessions that start after the reload'),
  'pool.size': live('every pool: raised, waiting clients get connections at once; lowered, connections over it close when released (workers: split between them, at least one each)'),
  'pool.min_idle': live('every pool, at its next sweep (each second)'),
  'pool.max_client_wait': live('waits that start after the reload'),
  'pool.server_idle_timeout': live('every pool, at its next sweep'),
  'pool.server_lifetime': live('every server connection, at its next release or sweep'),
  'pool.max_prepared_statements': live('every server connection, at its next checkout'),
  'auth.method': live('logins after the reload'),
  users: live('logins after the reload; sessions of a removed user go on until they disconnect'),
  'users[].password': live('logins after the reload'),
  'users[].read_tags': live("that user's sessions that start after the reload"),
  'users[].pool_mode': live("that user's sessions that start after the reload"),
  nodes: live('an added node is probed at once and used once it answers; a removed one gets no new statements, and its pools, probe and LSN polls close (not the current primary: switch over first)'),
  'nodes[].host': live("the node starts over at the new address: state, pools and probe (not the current primary's: switch over first)"),
  'nodes[].port': live("the node starts over at the new address: state, pools and probe (not the current primary's: switch over first)"),
  'nodes[].weight': live('next read choice of every session'),
  'nodes[].tags': live('next read choice of every session'),
  'nodes[].delayed': live('next read choice and next failover decision'),
  'nodes[].priority': live('next failover decision'),
  'nodes[].tls.*': live("files re-read; the node's pools are drained and its probe reconnects; new server connections use it"),
  'nodes[].allow_cleartext_password': live("the node's pools are drained; new server connections use it"),
  'monitor.user': live('probe connections reopen with it'),
  'monitor.password': live('probe connections reopen with it'),
  'monitor.database': live('probe connections reopen with it'),
  'monitor.interval': live('from the next probe round'),
  'monitor.connect_timeout': live('probe connections reopen with it'),
  'monitor.probe_timeout': live('probe connections reopen with it'),
  'backend.connect_timeout': live('server connections opened after the reload'),
  'routing.enabled': live('sessions that start after the reload (open ones keep routing or relaying)'),
  'routing.read_only_functions': live('function catalog rebuilt, cached routing decisions dropped (statements a session prepared before keep theirs)'),
  'routing.write_functions': live('function catalog rebuilt, cached routing decisions dropped (statements a session prepared before keep theirs)'),
  'routing.max_parse_length': live('classifier rebuilt: cached routing decisions dropped, the new bound decides from the next statement (statements a session prepared before keep theirs)'),
  'routing.parse_cache_size': live('classifier rebuilt with a cache of the new size (cached routing decisions dropped)'),
  'routing.load_balance': live('next read choice of every session'),
  'routing.primary_reads': live('next read choice of every session'),
  'routing.consistency': live('next read of every session'),
  'routing.max_replica_lag.bytes': live('bans are decided with it from the next probe round'),
  'routing.max_replica_lag.time': live('bans are decided with it from the next probe round'),
  'routing.unban_after': live('bans are decided with it from the next probe round'),
  'routing.read_tags': live('next read choice of every session'),
  'stats.enabled': restart('whether sessions count statements is decided once, at start (answers must match the units counted from the first)'),
  'stats.max_statements': live('the next statement that needs room (a smaller bound drops the least used then)'),
  'failover.enabled': live('next failover decision'),
  'failover.failure_threshold': live('next probe round'),
  'failover.hold_timeout': live('waits for a primary that start after the reload'),
  'failover.promote_timeout': live('next promotion'),
  'failover.hook_command': live('next time it runs'),
  'failover.rejoin_command': live('next time it runs'),
  'failover.demote_command': live('next time it runs'),
  'failover.switchover_timeout': live('next switchover'),
  'failover.hook_timeout': live('next command run'),
  'replication.mode': live('synchronous_standby_names is set on the primary at the next probe round'),
  'replication.strict': live('synchronous_standby_names is set on the primary at the next probe round'),
  'replication.synchronous_commit': live('set on the primary at the next probe round'),
  'coordination.*': restart("the etcd client, its lease and this instance's name are set up once, at start"),
  workers: restart('worker processes are forked once, at start'),
  'shutdown.drain_timeout': live('the next drain'),
  'log.level': live('every process, from the next log line'),
});

/** The rule for a key path of config/schema-keys.ts: its own, else the nearest "section.*" above it. */
export function ruleFor(path: string): { key: string; rule: ReloadRule } | undefined {
  const own = RELOAD_RULES[path];
  if (own) return { key: path, rule: own };
  for (let end = path.lastIndexOf('.'); end > 0; end = path.lastIndexOf('.', end - 1)) {
    const key = `${path.slice(0, end)}.*`;
    const rule = RELOAD_RULES[key];
    if (rule) return { key, rule };
  }
  return undefined;
}
