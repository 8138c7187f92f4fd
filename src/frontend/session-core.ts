// The state of one routing session that all of its parts read and change; what each part does is in session.ts.
import type net from 'node:net';
import type { Logger } from '../util/logger.js';
import type { ProxyError } from '../errors.js';
import { TX } from '../protocol/codes.js';
import type { ServerLink } from '../backend/server-link.js';
import type { Pools } from '../backend/pool.js';
import type { Classifier } from '../router/classifier.js';
import type { LoadBalance, RouteHint } from '../router/route.js';
import type { Topology } from '../topology/topology.js';
import type { WalPositions } from '../health/wal-positions.js';
import type { CancelRegistry } from './cancel-registry.js';
import type { ReadSlot } from '../util/read-slot.js';
import type { ProxyStats } from './stats.js';
import type { ClientLimits } from './client-startup.js';
import type { Unit } from './unit.js';
import type { SessionState } from './session-state.js';
import type { PreparedStatements } from './prepared-statements.js';
import type { ReplicaChoice } from './replica-choice.js';
import type { SessionLinks } from './session-links.js';
import type { StatementCounting } from './statement-keys.js';

export interface RoutingSettings {
  loadBalance: LoadBalance;
  primaryReads: 'fallback' | 'include' | 'never';
  consistency: 'read-your-writes' | 'eventual';
  /** routing.read_tags: sessions read only from replicas with one of these tags (empty: any ordinary replica). */
  readTags: readonly string[];
  /** users[].read_tags, by user, where set. */
  userReadTags: ReadonlyMap<string, readonly string[]>;
  /** failover.hold_timeout: statements wait this long for a new primary after the session's was lost. */
  holdTimeoutMs: number;
}

export interface SessionContext {
  stats: ProxyStats;
  /** Statement statistics (stats.enabled), or null: then nothing per statement is done for them. */
  statements: StatementCounting | null;
  cancels: CancelRegistry;
  log: Logger;
  topology: Topology;
  classifier: Classifier;
  lsn: WalPositions;
  routing(): RoutingSettings;
  limits(): ClientLimits;
  pools: Pools;
  /** pool.max_prepared_statements: prepared statements kept per server connection. */
  maxPreparedPerServer(): number;
  /** limits.max_prepared_bytes: bytes of prepared statements per session and per server connection. */
  maxPreparedBytes(): number;
}

/** What a client asked for at login that shapes its session. */
export interface SessionStartup {
  hint: RouteHint;
  readTags: readonly string[] | null;
  maxLagMs?: number | null;
  /** The database the client logged in to (pools are per node, user and database). */
  database: string;
  /** transaction: server connections go back to their pool whenever the session is idle; session: they stay until it ends. */
  poolMode: 'transaction' | 'session';
  /** application_name at login (SHOW CLIENTS). */
  applicationName?: string;
}

/** A replica whose connection failed is left alone this long. */
export const REPLICA_RETRY_AFTER = 5000;

export const statusChar = (s: number): 'I' | 'T' | 'E' => (s === TX.Idle ? 'I' : s === TX.Failed ? 'E' : 'T');

export abstract class SessionCore {
  /** The transaction status of the last ReadyForQuery the client got (TX). */
  txStatus: number = TX.Idle;
  /** Units sent to a server and not yet answered, in the order the client sent them. */
  readonly inflight: Unit[] = [];
  /** Units waiting for a server. */
  readonly queue: Unit[] = [];
  /** The extended-protocol batch being received (up to its Sync or Flush). */
  batch: Unit | null = null;
  /** The link the open transaction (or an unfinished batch after Flush) lives on. */
  sticky: ServerLink | null = null;
  /** The link of the last unit dispatched: where COPY data goes. */
  copyLink: ServerLink | null = null;
  /** The client's next Sync completes an extended-protocol COPY (see client-messages.ts). */
  copyOwesSync = false;
  /**
   * The open transaction died with its server connection: the proxy answers as a server in a failed transaction
   * would (see failed-transaction.ts) until it ends. `error` is the loss, not yet reported to the client.
   */
  cut: { error: ProxyError | null } | null = null;
  /** An error ended an extended-protocol batch early: the client's messages up to its Sync are discarded. */
  discardUntilSync = false;
  /**
   * What the session's units hold in the proxy, queued or in flight (their bytes plus a cost per unit and per
   * message, see unitCost); the client is not read while it is over limits.max_pipeline.
   */
  pipelined = 0;
  /** A server connection's socket did not take the last write at once: stop reading the client until it drains. */
  writeBlocked = false;
  clientPaused = false;
  /** While the client is paused: the timer that reads it now and then to notice that it left (see flow). */
  peekTimer: NodeJS.Timeout | null = null;
  closed = false;
  /** The client sent Terminate. */
  terminating = false;
  drainRequested = false;
  /** Last time the client sent something or a unit finished (for the idle timeouts). */
  lastActivity = Date.now();
  /** Asynchronous primary output (NOTIFY …) that arrived while a replica's answer was being relayed. */
  asyncOutput: Buffer[] = [];
  /** LsnTracker ticket of the session's last committed write (0: none yet); its reads must see it. */
  writeTicket = 0;
  /** The open transaction on the primary has run something other than plain reads. */
  txMayWrite = false;
  /** pgsplit.route (SET, or the startup option). */
  hint: RouteHint;
  /** pgsplit.max_lag (ms; SET, or the startup option); null: the configured threshold. */
  maxLagMs: number | null;
  readonly database: string;
  readonly poolMode: 'transaction' | 'session';
  readonly applicationName: string;
  readonly connectedAt = Date.now();
  /** Set while an operator's PAUSE holds the next unit: wakes the session on 'resume' (see operator-pause.ts). */
  pauseWait: (() => void) | null = null;
  /** Server connections the session holds, and how it gets its primary connection. */
  abstract readonly links: SessionLinks;
  /** The replica this session reads from (kept while usable; its connection comes from the pool for each read). */
  abstract readonly replicas: ReplicaChoice;
  /** Settings and pins that must hold on every server the session uses. */
  abstract readonly state: SessionState;
  abstract readonly prepared: PreparedStatements;

  constructor(
    readonly client: net.Socket,
    readonly clientSlot: ReadSlot,
    readonly key: { pid: number; secret: number },
    readonly user: string,
    readonly ctx: SessionContext,
    startup: SessionStartup,
  ) {
    this.database = startup.database;
    this.applicationName = startup.applicationName ?? '';
    this.poolMode = startup.poolMode;
    this.hint = startup.hint;
    this.maxLagMs = startup.maxLagMs ?? null;
  }

  /** The session's connection to the primary while it holds one. */
  get home(): ServerLink | null {
    return this.links.home;
  }

  abstract readTagsInEffect(settings?: RoutingSettings): readonly string[];
  /** End the session with this error (sent to the client as FATAL). */
  abstract end(err: ProxyError): void;
  /** A bug, not the client's doing: the session ends with XX000 and a log line. */
  abstract fail(err: unknown): void;
  /** The session is over: stop waiting for anything and tell the listener. */
  abstract finish(): void;
  /** Give back or close every server connection (after Terminate, a close, or end). */
  abstract closeAll(): void;
}
