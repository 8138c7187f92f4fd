// The messages a coordinator and its workers exchange over the cluster IPC channel (JSON, in order per worker).
import type { Config } from '../config/schema.js';
import type { TopologySnapshot } from '../topology/topology.js';
import type { FrontendSnapshot } from './frontend-snapshot.js';
import type { ConsoleCommand } from '../console/parse-command.js';
import type { ConsoleReply } from '../console/reply.js';
import type { StatementsSnapshot } from '../stats/statement-stats.js';

/** Coordinator → worker. */
export type ToWorker =
  /** The first message: who the worker is and the config it serves (with its share of the instance-wide bounds). */
  | { t: 'start'; index: number; count: number; config: Config; topology: TopologySnapshot; volatile: string[] }
  | { t: 'reload'; config: Config }
  /** A client connection: its TCP handle comes with the message. */
  | { t: 'client' }
  | { t: 'topology'; topology: TopologySnapshot }
  /** The function catalog from the primary's pg_proc changed. */
  | { t: 'catalog'; volatile: string[] }
  /** A database a worker asked about is in the catalog now (or could not be loaded). */
  | { t: 'database-done'; name: string }
  /** The worker's read-your-writes tickets up to `upTo` are covered by this primary LSN. */
  | { t: 'lsn'; upTo: number; lsn: number }
  | { t: 'replayed'; node: string; lsn: number }
  /** A cancel request for one of this worker's sessions arrived at another worker. */
  | { t: 'cancel'; pid: number; secret: number }
  /** Answer with a snapshot (for /metrics and /status) or a pong (every earlier message is applied). */
  /** `listing`: with every client and server connection (the admin console's SHOW CLIENTS / SERVERS). */
  | { t: 'snapshot'; id: number; listing?: boolean }
  /** The answer to an admin console command the worker forwarded. */
  | { t: 'console-reply'; id: number; reply: ConsoleReply }
  | { t: 'ping'; id: number }
  /** Answer with the worker's statement statistics (GET /statements), or empty them and answer with a pong. */
  | { t: 'statements'; id: number }
  | { t: 'statements-reset'; id: number }
  /** Stop taking clients, let sessions finish within timeoutMs, then exit. */
  | { t: 'drain'; timeoutMs: number };

/** Worker → coordinator. */
export type FromWorker =
  /** The worker listens for IPC messages now: send it 'start'. */
  | { t: 'ready' }
  /** Ready to take clients. */
  | { t: 'serving' }
  /** This many client connections closed since the last report (the coordinator counts max_client_connections). */
  | { t: 'closed'; n: number }
  /** Read-your-writes: this worker's sessions took tickets up to k (their writes were acknowledged). */
  | { t: 'ticket'; k: number }
  | { t: 'want'; lsn: number; nodes: string[] }
  | { t: 'cancel'; owner: number; pid: number; secret: number }
  | { t: 'database'; name: string }
  | { t: 'snapshot'; id: number; snapshot: FrontendSnapshot }
  /** An admin console command of one of its sessions: the coordinator runs it (it owns Control). */
  | { t: 'console'; id: number; command: ConsoleCommand }
  /** null: stats are off. */
  | { t: 'statements'; id: number; statements: StatementsSnapshot | null }
  | { t: 'pong'; id: number };

export const isMessage = (m: unknown): m is { t: string } => typeof m === 'object' && m !== null && typeof (m as { t: unknown }).t === 'string';
