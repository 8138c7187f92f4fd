// The one source of truth about the cluster's nodes: role, health and WAL positions, with change events.
import { EventEmitter } from 'node:events';

export type Role = 'primary' | 'replica' | 'unknown';

export interface NodeAddress {
  name: string;
  host: string;
  port: number;
  /** Share of ordinary reads relative to the other replicas (default 1; 0 = none). */
  weight?: number;
  tags?: readonly string[];
  /** A deliberately delayed replica: reads only for sessions asking for one of its tags; never promoted. */
  delayed?: boolean;
  /** Failover preference among candidates at the same WAL position. */
  priority?: number;
}

export interface NodeState extends NodeAddress {
  role: Role;
  up: boolean;
  /** Consecutive failed probes. */
  failures: number;
  lastProbeAt: number | null;
  lastError: string | null;
  /** Primary: pg_current_wal_lsn(). Replicas: null. */
  currentLsn: string | null;
  receiveLsn: string | null;
  replayLsn: string | null;
  replayTimestamp: string | null;
  timeline: number | null;
  systemIdentifier: string | null;
  serverVersion: string | null;
  /** replayLsn as a number (see lsn.ts), for comparisons on the statement path. */
  replayLsnValue: number | null;
  /** Replica: pg_is_wal_replay_paused(). */
  replayPaused: boolean | null;
  /** Replica: replay has caught up with what its WAL receiver got. */
  caughtUp: boolean | null;
  /** Replica: now() - pg_last_xact_replay_timestamp(), seconds. */
  replayAgeSeconds: number | null;
  /** Lag behind the primary, from the last probe round (see health/lag.ts). */
  lagBytes: number | null;
  lagSeconds: number | null;
  behindSince: number | null;
  /** Replica: its WAL receiver's status ('streaming', 'waiting' …; null: none running) and the server it streams from. */
  receiverStatus: string | null;
  senderHost: string | null;
  senderPort: number | null;
  /** Primary: the standbys connected to it, as pg_stat_replication shows them. */
  standbys: StandbyState[] | null;
  /** Banned from new reads (over a lag bound or failing probes), and since when it has been back under them. */
  banned: boolean;
  banReason: 'probe-failed' | 'lag-bytes' | 'lag-time' | null;
  banSince: number | null;
  clearSince: number | null;
}

export interface StandbyState {
  /** application_name of the standby's WAL receiver (pgsplit sets it to the node's name). */
  name: string;
  /** streaming | catchup | startup … */
  state: string;
  /** async | potential | sync | quorum */
  syncState: string;
  flushLsn: string | null;
}

export interface TopologyEvents {
  change: [];
  primary: [name: string | null, previous: string | null];
  pause: [];
  resume: [];
}

/** Everything routing reads from a Topology, as plain data: what a coordinator sends its workers. */
export interface TopologySnapshot {
  nodes: NodeState[];
  primary: string | null;
  fenced: string[];
  writesPaused: boolean;
  writableUntil: number;
  /** An operator's PAUSE: every new unit is held (see Topology.unitsPaused). */
  unitsPaused: boolean;
  /** Replicas an operator took out of reads, with when (ms since the epoch). */
  operatorBans: [string, number][];
}

export function initialNodeState(a: NodeAddress): NodeState {
  return {
    ...a,
    role: 'unknown',
    up: false,
    failures: 0,
    lastProbeAt: null,
    lastError: null,
    currentLsn: null,
    receiveLsn: null,
    replayLsn: null,
    replayTimestamp: null,
    timeline: null,
    systemIdentifier: null,
    serverVersion: null,
    replayLsnValue: null,
    replayPaused: null,
    caughtUp: null,
    replayAgeSeconds: null,
    lagBytes: null,
    lagSeconds: null,
    behindSince: null,
    receiverStatus: null,
    senderHost: null,
    senderPort: null,
    standbys: null,
    banned: false,
    banReason: null,
    banSince: null,
    clearSince: null,
  };
}

export class Topology extends EventEmitter<TopologyEvents> {
  private nodes = new Map<string, NodeState>();
  private primaryName: string | null = null;
  /** Derived on demand and dropped on every change: read on each routed statement, changed once per probe. */
  private replicasCache: readonly NodeState[] | null = null;
  /** Bumped on every change, so callers can tell that what they derived is still current. */
  version = 0;

  constructor(addresses: readonly NodeAddress[]) {
    super();
    // Every session waiting out a switchover listens for 'resume' once.
    this.setMaxListeners(0);
    this.setAddresses(addresses);
  }

  /** Replace the node list (config reload), keeping what is known about nodes that stay. */
  setAddresses(addresses: readonly NodeAddress[]): void {
    const next = new Map<string, NodeState>();
    for (const a of addresses) {
      const old = this.nodes.get(a.name);
      // What is known about a node survives a reload unless its address changed; weight and tags follow the config.
      next.set(a.name, old && old.host === a.host && old.port === a.port ? { ...old, weight: a.weight, tags: a.tags, delayed: a.delayed, priority: a.priority } : initialNodeState(a));
    }
    this.nodes = next;
    this.replicasCache = null;
    this.version++;
    if (this.primaryName && !next.has(this.primaryName)) this.setPrimary(null);
    this.emit('change');
  }

  get primary(): NodeState | null {
    return this.primaryName ? (this.nodes.get(this.primaryName) ?? null) : null;
  }

  node(name: string): NodeState | undefined {
    return this.nodes.get(name);
  }

  all(): NodeState[] {
    return [...this.nodes.values()];
  }

  /** Nodes that are up, in recovery, not the primary and not banned: the ones that may serve reads. */
  replicas(): readonly NodeState[] {
    return (this.replicasCache ??= Object.freeze(this.all().filter((n) => n.up && n.role === 'replica' && n.name !== this.primaryName && !n.banned && !this.fenced.has(n.name) && !this.operatorBans.has(n.name))));
  }

  /** Replicas that are up but banned (lagging, failing probes, or by an operator): reads that skip them say so. */
  bannedReplicas(): NodeState[] {
    return this.all().filter((n) => n.up && n.role === 'replica' && n.name !== this.primaryName && (n.banned || this.operatorBans.has(n.name)));
  }

  update(name: string, patch: Partial<NodeState>): void {
    const n = this.nodes.get(name);
    if (!n) return;
    this.nodes.set(name, { ...n, ...patch });
    this.replicasCache = null;
    this.version++;
    this.emit('change');
  }

  /** A planned switchover holds new writes back: sessions wait for 'resume' before sending the primary anything new. */
  writesPaused = false;

  pauseWrites(): void {
    this.writesPaused = true;
    this.version++;
    this.emit('pause');
  }

  resumeWrites(): void {
    if (!this.writesPaused) return;
    this.writesPaused = false;
    this.version++;
    this.emit('resume');
  }

  /**
   * Several instances (coordination): writes may go to the primary only until this time (ms since the epoch, this
   * host's clock), the last confirmation of the published state plus lease_ttl. Infinity when running alone.
   */
  writableUntil = Infinity;

  setWritableUntil(t: number): void {
    if (t === this.writableUntil) return;
    const wasWritable = Date.now() < this.writableUntil;
    this.writableUntil = t;
    // Sessions holding for a primary wake on 'primary' (the primary is usable again); 'change' carries the new
    // deadline to workers (a coordinator forwards every change).
    if (!wasWritable && Date.now() < t) this.emit('primary', this.primaryName, this.primaryName);
    this.emit('change');
  }

  /**
   * An operator's PAUSE (admin console): sessions hold every new unit, reads too, until resumeUnits(). Kept apart
   * from writesPaused, which a switchover sets and lifts on its own schedule.
   */
  unitsPaused = false;

  pauseUnits(): void {
    if (this.unitsPaused) return;
    this.unitsPaused = true;
    this.version++;
    this.emit('pause');
  }

  resumeUnits(): void {
    if (!this.unitsPaused) return;
    this.unitsPaused = false;
    this.version++;
    this.emit('resume');
  }

  /**
   * Replicas an operator took out of reads (BAN in the admin console), with when. Kept apart from NodeState.banned,
   * which every probe round recomputes: the monitor's unban never lifts these, only UNBAN does.
   */
  operatorBans: ReadonlyMap<string, number> = new Map();

  setOperatorBan(name: string, banned: boolean, at = Date.now()): void {
    if (banned === this.operatorBans.has(name)) return;
    const next = new Map(this.operatorBans);
    if (banned) next.set(name, at);
    else next.delete(name);
    this.operatorBans = next;
    this.replicasCache = null;
    this.version++;
    this.emit('change');
  }

  /** Nodes that claim to be primary but are not the one routed to (an old primary back after a failover): no traffic. */
  fenced: ReadonlySet<string> = new Set();

  setFenced(names: readonly string[]): void {
    this.fenced = new Set(names);
    this.replicasCache = null;
    this.version++;
    this.emit('change');
  }

  setPrimary(name: string | null): void {
    if (name === this.primaryName) return;
    const previous = this.primaryName;
    this.primaryName = name;
    this.replicasCache = null;
    this.version++;
    this.emit('primary', name, previous);
    this.emit('change');
  }

  snapshot(): TopologySnapshot {
    return { nodes: this.all(), primary: this.primaryName, fenced: [...this.fenced], writesPaused: this.writesPaused, writableUntil: this.writableUntil, unitsPaused: this.unitsPaused, operatorBans: [...this.operatorBans] };
  }

  /** A worker's topology follows the coordinator's: it takes each snapshot whole and never decides anything itself. */
  follow(s: TopologySnapshot): void {
    this.nodes = new Map(s.nodes.map((n) => [n.name, n]));
    this.fenced = new Set(s.fenced);
    this.operatorBans = new Map(s.operatorBans ?? []);
    this.replicasCache = null;
    this.version++;
    if (s.writesPaused && !this.writesPaused) this.pauseWrites();
    if (s.unitsPaused) this.pauseUnits();
    // setPrimary emits 'primary' and 'change' only when the primary changed.
    const changed = s.primary !== this.primaryName;
    this.setPrimary(s.primary);
    if (!changed) this.emit('change');
    if (!s.writesPaused) this.resumeWrites();
    if (!s.unitsPaused) this.resumeUnits();
    // Last, so that sessions it wakes find the rest of the snapshot in place. Infinity crosses IPC as null.
    this.setWritableUntil(typeof s.writableUntil === 'number' ? s.writableUntil : Infinity);
  }
}
