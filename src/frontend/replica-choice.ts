// Which replica a session reads from: it keeps the one it was given while that one stays usable, and looks again when the topology or settings change.
import { chooseRead, meetsNeeds, readWeight, type PrimaryReadReason } from '../router/read-choice.js';
import type { NodeState, Topology } from '../topology/topology.js';
import type { WalPositions } from '../health/wal-positions.js';
import type { ProxyStats } from './stats.js';
import type { RoutingSettings } from './session.js';
import { NONE } from './unit.js';

/** What a read needs of a replica: the session's tags, the WAL position of its last write, a lag bound. */
export interface ReadNeeds {
  tags: readonly string[];
  lsn: number | null;
  maxLagMs: number | null;
}

/**
 * Balancing happens across sessions (the round-robin counter is shared), so each session needs connections to
 * one replica rather than to all of them.
 */
export class ReplicaChoice {
  private node: string | null = null;
  /** Topology version and settings under which `node` was last found usable. */
  private checkedAt = -1;
  private checkedWith: RoutingSettings | null = null;
  /** Replicas left alone until the time given (a connection to them failed), made on first need. */
  private down: Map<string, number> | null = null;

  constructor(
    private readonly topology: Topology,
    private readonly lsn: WalPositions,
    private readonly stats: ProxyStats,
  ) {}

  /** The replica the session reads from now (null: none chosen yet). */
  get current(): string | null {
    return this.node;
  }

  /** Look again at the next read (the session's tags changed, or its replica failed). */
  invalidate(): void {
    this.checkedAt = -1;
  }

  /** Leave `node` alone for `ms` (its connection failed); the next read looks again. */
  leaveAlone(node: string, ms: number): void {
    (this.down ??= new Map()).set(node, Date.now() + ms);
    this.checkedAt = -1;
  }

  /** Why the last choose() that returned null sends the read to the primary. */
  reason: PrimaryReadReason = 'no-replica';

  /** The node to read from (the primary's name when it is the choice), or null: the read goes to the primary (see `reason`). */
  choose(settings: RoutingSettings, needs: ReadNeeds): string | null {
    const topology = this.topology;
    const { lsn, maxLagMs } = needs;
    const mine = this.node;
    if (mine !== null && this.checkedAt === topology.version && this.checkedWith === settings) {
      // Nothing changed since it was checked (the usual case): skip the search.
      if ((lsn === null && maxLagMs === null) || mine === topology.primary?.name) return mine;
      const node = topology.node(mine);
      if (node && meetsNeeds(node, { tags: NONE, lsn, maxLagMs }, this.replayLsn)) return mine;
    }
    const tags = needs.tags;
    let candidates: readonly NodeState[] = topology.replicas();
    const down = this.down;
    if (down !== null && down.size > 0) {
      const now = Date.now();
      candidates = candidates.filter((n) => (down.get(n.name) ?? 0) <= now);
    }
    const primary = topology.primary;
    if (settings.primaryReads === 'include' && primary) candidates = [...candidates, { ...primary, lagSeconds: 0, tags, delayed: false }];
    const choice = chooseRead(candidates, { tags, lsn, maxLagMs }, {
      preferred: mine,
      bannedCount: topology.bannedReplicas().filter((n) => readWeight(n, tags) > 0).length,
      replayLsn: this.replayLsn,
      strategy: settings.loadBalance,
      turn: this.stats.replicaTurn,
      connections: this.stats.backendConnections,
    });
    if (choice.node === null) {
      if (choice.reason === 'read-your-writes' && lsn !== null) this.lsn.want(lsn, choice.waitingFor);
      this.reason = choice.reason;
      return null;
    }
    const pick = choice.node.name;
    if (pick !== mine) this.stats.replicaTurn++;
    this.node = pick;
    this.checkedAt = topology.version;
    this.checkedWith = settings;
    return pick;
  }

  /** Replay LSN of a node as far as read-your-writes knows (the primary has everything). */
  private readonly replayLsn = (name: string): number | null => (name === this.topology.primary?.name ? Number.MAX_VALUE : this.lsn.replayLsn(name));
}
