// ProxyError: an error the proxy itself reports to a client, with a real SQLSTATE and a stable code.

export type Severity = 'ERROR' | 'FATAL';

export class ProxyError extends Error {
  constructor(
    readonly sqlstate: string,
    readonly code: string,
    message: string,
    readonly severity: Severity = 'ERROR',
    readonly detail?: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

/** A switchover that cannot be done as asked (the admin port answers 409); the message says why. */
export class SwitchoverRefused extends Error {}

// Named constructors so every client-facing failure has one place that decides its SQLSTATE and wording.
export const errors = {
  noPrimary: (why: string) =>
    new ProxyError('57P03', 'no_primary', 'pgsplit: no primary server is available', 'FATAL', why,
      'The cluster may be failing over; retry shortly. GET /status on the admin port shows what the monitor sees.'),
  noReplica: () =>
    new ProxyError('57P03', 'no_replica', 'pgsplit: no replica is available for this read', 'ERROR',
      'routing.primary_reads is "never", so reads are not sent to the primary.',
      'Retry when a replica is back (GET /status on the admin port), or set routing.primary_reads to fallback.'),
  primaryLost: (node: string, commitInFlight: boolean) =>
    commitInFlight
      ? new ProxyError('08007', 'transaction_resolution_unknown', `pgsplit: connection to primary "${node}" was lost while a commit was in flight (failover)`, 'ERROR',
          'The commit may or may not have happened; check before retrying. The session continues on the new primary.')
      : new ProxyError('08006', 'primary_lost', `pgsplit: connection to primary "${node}" was lost (failover); the statement or transaction did not complete`, 'ERROR',
          'The transaction was rolled back. The session continues: its next statement runs on the new primary.'),
  replicaLost: (node: string) =>
    new ProxyError('08006', 'replica_lost', `pgsplit: connection to replica "${node}" was lost`, 'ERROR',
      'The statement (or the read-only transaction it was part of) did not complete; the session continues.'),
  backendConnect: (node: string, why: string) =>
    new ProxyError('08006', 'backend_connect_failed', `pgsplit: could not connect to server "${node}"`, 'FATAL', why),
  backendLost: (node: string, why: string) =>
    new ProxyError('08006', 'backend_lost', `pgsplit: connection to server "${node}" was lost`, 'FATAL', why,
      'Reconnect; if the primary failed, pgsplit routes the new connection to the node that is primary now.'),
  authFailed: (user: string) =>
    new ProxyError('28P01', 'auth_failed', `password authentication failed for user "${user}"`, 'FATAL'),
  unknownUser: (user: string) =>
    // Same wording as a bad password so that a probe cannot tell which user names exist.
    new ProxyError('28P01', 'auth_failed', `password authentication failed for user "${user}"`, 'FATAL'),
  protocolViolation: (why: string) =>
    new ProxyError('08P01', 'protocol_violation', `pgsplit: protocol violation: ${why}`, 'FATAL'),
  unsupportedProtocol: (major: number, minor: number) =>
    new ProxyError('0A000', 'unsupported_protocol',
      `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`, 'FATAL'),
  featureNotSupported: (what: string) =>
    new ProxyError('0A000', 'feature_not_supported', `pgsplit: ${what} is not supported`, 'FATAL'),
  tooManyClients: (max: number) =>
    new ProxyError('53300', 'too_many_clients', `pgsplit: sorry, too many clients already (max_client_connections = ${max})`, 'FATAL'),
  messageTooLarge: (type: number, bytes: number, max: number) =>
    new ProxyError('54000', 'message_too_large', `pgsplit: message of type '${String.fromCharCode(type)}' is too large (${bytes} bytes; limits.max_message_size is ${max})`, 'FATAL',
      undefined, 'Send smaller messages (e.g. COPY in pieces, large values as several statements), or raise limits.max_message_size.'),
  loginTimeout: (ms: number) =>
    new ProxyError('57014', 'login_timeout', `pgsplit: canceling authentication due to timeout (limits.client_login_timeout = ${ms} ms)`, 'FATAL'),
  idleSessionTimeout: (ms: number) =>
    new ProxyError('57P05', 'idle_session_timeout', `pgsplit: terminating connection due to idle-session timeout (limits.client_idle_timeout = ${ms} ms)`, 'FATAL'),
  idleInTransactionTimeout: (ms: number) =>
    new ProxyError('25P03', 'idle_in_transaction_timeout', `pgsplit: terminating connection due to idle-in-transaction timeout (limits.idle_transaction_timeout = ${ms} ms)`, 'FATAL'),
  sessionLimit: (what: string, max: number, key: string) =>
    new ProxyError('53400', 'session_limit', `pgsplit: too many ${what} in this session (at most ${max})`, 'ERROR', undefined, `Raise ${key}, or release some (DEALLOCATE, Close, RESET).`),
  preparedBytesLimit: (bytes: number, max: number) =>
    new ProxyError('53400', 'session_limit', `pgsplit: this Parse would make the session's prepared statements ${bytes} bytes, more than limits.max_prepared_bytes (${max})`, 'ERROR',
      'pgsplit keeps every named prepared statement of a session, to prepare it on whichever server runs it.',
      'Close (DEALLOCATE) statements the session no longer uses, or raise limits.max_prepared_bytes.'),
  settingsBytesLimit: (bytes: number, max: number) =>
    new ProxyError('53400', 'session_limit', `pgsplit: this SET would make the session's recorded settings ${bytes} bytes, more than limits.max_session_settings_bytes (${max})`, 'ERROR',
      'pgsplit keeps the SET statements of a session, to replay them on whichever server runs its next statement.',
      'RESET settings the session no longer needs, or raise limits.max_session_settings_bytes.'),
  poolTimeout: (node: string, waitedMs: number, size: number) =>
    new ProxyError('53300', 'pool_timeout', `pgsplit: no server connection to "${node}" became free within ${waitedMs} ms (pool.max_client_wait)`, 'ERROR',
      `All ${size} server connections of the pool (pool.size) stayed busy.`,
      'Retry; if it happens often, raise pool.size (and PostgreSQL max_connections), or look for long transactions (SHOW POOLS, GET /status).'),
  poolDrained: (node: string) =>
    new ProxyError('08006', 'pool_drained', `pgsplit: the pool of server "${node}" was closed (its role changed)`, 'ERROR', undefined, 'Retry; the statement was not run.'),
  internal: (why: string) =>
    new ProxyError('XX000', 'internal_error', `pgsplit: internal error: ${why}`, 'FATAL', undefined, 'This is a bug in pgsplit; the session was closed, others are unaffected. Please report it with the proxy log.'),
  noWorker: () =>
    new ProxyError('57P03', 'no_worker', 'pgsplit: no worker process is serving clients right now', 'FATAL', 'Every worker has exited; the coordinator is restarting them.', 'Try again in a moment.'),
  shuttingDown: () =>
    new ProxyError('57P01', 'shutting_down', 'pgsplit: terminating connection because the proxy is shutting down', 'FATAL'),
};
