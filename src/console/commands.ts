// Runs one admin console command against the instance (where Control lives: the single process, or the coordinator) and builds its reply.
import type { Topology } from '../topology/topology.js';
import type { Logger } from '../util/logger.js';
import { SwitchoverRefused } from '../errors.js';
import { maskConninfo } from '../config/redact.js';
import type { ConsoleCommand } from './parse-command.js';
import { consoleError, type ConsoleReply } from './reply.js';
import type { StatementsSource } from '../stats/statements-source.js';
import { clientRows, configRows, helpRows, nodeRows, poolRows, serverRows, statementRows, statsRows, versionRows, type ClientRow, type NodeStatus, type PoolRow, type ServerRow, type TrafficRow } from './rows.js';

/** What SHOW needs, gathered afresh for each command (a coordinator asks its workers first). */
export interface ConsoleFacts {
  nodes: readonly NodeStatus[];
  pools: readonly PoolRow[];
  traffic: readonly TrafficRow[];
  /** The running config with its secrets masked as GET /status masks them. */
  config: unknown;
}

export interface ConsoleListing {
  clients: readonly ClientRow[];
  servers: readonly ServerRow[];
  omittedClients: number;
  omittedServers: number;
}

/** A reload's outcome (compose/reload.ts's ReloadResult). */
export interface ReloadOutcome {
  result: 'applied' | 'partial' | 'rejected';
  applied: string[];
  kept: { key: string; reason: string }[];
  error?: string;
}

export interface ConsoleDeps {
  topology: Topology;
  log: Logger;
  version: string;
  facts(): Promise<ConsoleFacts>;
  listing(): Promise<ConsoleListing>;
  reload(): Promise<ReloadOutcome>;
  /** Resolves once every process holds new units; true when it was paused already. */
  pause(): Promise<boolean>;
  /** false when nothing was paused. */
  resume(): boolean;
  pausedUntil(): number | null;
  switchover(to: string): Promise<{ old_primary: string | null; new_primary: string; duration_ms: number }>;
  /** Statement statistics (this process's table, or every worker's added up by the coordinator). */
  statements: StatementsSource;
}

async function show(topic: Extract<ConsoleCommand, { kind: 'show' }>['topic'], d: ConsoleDeps): Promise<ConsoleReply> {
  switch (topic) {
    case 'nodes':
      return nodeRows((await d.facts()).nodes);
    case 'pools':
      return poolRows((await d.facts()).pools);
    case 'clients': {
      const l = await d.listing();
      return clientRows(l.clients, l.omittedClients);
    }
    case 'servers': {
      const l = await d.listing();
      return serverRows(l.servers, l.omittedServers);
    }
    case 'stats': {
      const f = await d.facts();
      return statsRows(f.traffic, f.nodes.map((n) => n.name));
    }
    case 'statements':
      return d.statements.enabled ? statementRows(await d.statements.rows()) : statsOff();
    case 'config':
      return configRows((await d.facts()).config);
    case 'version':
      return versionRows(d.version);
    case 'help':
      return helpRows();
  }
}

/** BAN / UNBAN: an operator's ban is only for nodes the config names; the primary takes no reads to ban it from. */
function ban(c: Extract<ConsoleCommand, { kind: 'ban' | 'unban' }>, d: ConsoleDeps): ConsoleReply {
  const t = d.topology;
  const node = t.node(c.node);
  if (!node) return consoleError('42704', `no node named "${c.node}"`, undefined, `Nodes: ${t.all().map((n) => n.name).join(', ')}.`);
  const banned = t.operatorBans.has(c.node);
  if (c.kind === 'unban') {
    if (!banned) return { kind: 'done', tag: 'UNBAN', notice: `${c.node} was not banned by an operator` };
    t.setOperatorBan(c.node, false);
    d.log.warn({ node: c.node }, 'UNBAN: an operator let a replica serve reads again');
    return { kind: 'done', tag: 'UNBAN' };
  }
  if (t.primary?.name === c.node) return consoleError('55000', `${c.node} is the primary: BAN takes a replica out of reads`, undefined, 'Switch over first (SWITCHOVER node) if this node must stop serving.');
  if (banned) return { kind: 'done', tag: 'BAN', notice: `${c.node} was banned already` };
  t.setOperatorBan(c.node, true);
  d.log.warn({ node: c.node }, 'BAN: an operator took a replica out of reads');
  const others = t.replicas().length;
  return { kind: 'done', tag: 'BAN', ...(others === 0 ? { notice: 'no replica serves reads now: reads go to the primary (routing.primary_reads)' } : {}) };
}

const statsOff = () => consoleError('0A000', 'statement statistics are off (stats.enabled: false)', undefined, 'Set stats.enabled: true and restart pgsplit.');

function reloadReply(r: ReloadOutcome): ConsoleReply {
  if (r.result === 'rejected') return consoleError('F0000', `config reload rejected: ${r.error ?? 'no reason given'}`, 'The running config is unchanged.');
  const parts: string[] = [];
  if (r.applied.length > 0) parts.push(`applied: ${r.applied.join(', ')}`);
  if (r.kept.length > 0) parts.push(`kept until a restart: ${r.kept.map((k) => `${k.key} (${k.reason})`).join('; ')}`);
  return { kind: 'done', tag: 'RELOAD', notice: parts.length > 0 ? parts.join('; ') : 'the config file has no changes' };
}

/** The reply to one command; errors of the instance (a refused switchover, a failed reload) are replies too. */
export async function runCommand(c: ConsoleCommand, d: ConsoleDeps): Promise<ConsoleReply> {
  try {
    switch (c.kind) {
      case 'show':
        return await show(c.topic, d);
      case 'ban':
      case 'unban':
        return ban(c, d);
      case 'reload':
        return reloadReply(await d.reload());
      case 'pause': {
        const already = await d.pause();
        const until = d.pausedUntil();
        const when = until === null ? '' : ` until RESUME or ${new Date(until).toISOString()} (admin.pause_timeout)`;
        return { kind: 'done', tag: 'PAUSE', notice: `${already ? 'already paused; ' : ''}new statements are held${when}` };
      }
      case 'resume':
        return d.resume() ? { kind: 'done', tag: 'RESUME' } : { kind: 'done', tag: 'RESUME', notice: 'pgsplit was not paused' };
      case 'reset-stats':
        if (!d.statements.enabled) return statsOff();
        await d.statements.reset();
        d.log.info('RESET STATS: statement statistics emptied');
        return { kind: 'done', tag: 'RESET' };
      case 'switchover': {
        const e = await d.switchover(c.node);
        return { kind: 'done', tag: 'SWITCHOVER', notice: `${e.old_primary ?? '(none)'} -> ${e.new_primary} in ${e.duration_ms} ms` };
      }
    }
  } catch (err) {
    // Errors from nodes may quote a conninfo: its password never reaches the client (nor the log).
    const why = maskConninfo((err as Error).message);
    if (err instanceof SwitchoverRefused) return consoleError('55000', `switchover refused: ${why}`);
    d.log.error({ command: c.kind, err: why }, 'admin console command failed');
    return consoleError('58000', `${c.kind} failed: ${why}`);
  }
}
