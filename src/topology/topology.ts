// The one source of truth about the cluster's nodes: role, health and WAL positions, with change events.
import { EventEmitter } from 'node:events';

export type Role = 'primary' | 'replica' | 'unknown';

export interface NodeAddress {
  name: string;
  host: string;
  port: number;
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
}

export interface TopologyEvents {
  change: [];
  primary: [name: string | null, previous: string | null];
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
    this.setAddresses(addresses);
  }

  /** Replace the node list (config reload), keeping what is known about nodes that stay. */
  setAddresses(addresses: readonly NodeAddress[]): void {
    const next = new Map<string, NodeState>();
    for (const a of addresses) {
      const old = this.nodes.get(a.name);
      next.set(a.name, old && old.host === a.host && old.port === a.port ? old : initialNodeState(a));
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

  /** Nodes that are up, in recovery and not the primary: the ones that may serve reads. */
  replicas(): readonly NodeState[] {
    return (this.replicasCache ??= Object.freeze(this.all().filter((n) => n.up && n.role === 'replica' && n.name !== this.primaryName)));
  }

  update(name: string, patch: Partial<NodeState>): void {
    const n = this.nodes.get(name);
    if (!n) return;
    this.nodes.set(name, { ...n, ...patch });
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
}
