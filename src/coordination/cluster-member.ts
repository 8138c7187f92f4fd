// One pgsplit instance among several: holds or follows the leadership (an etcd key on a lease), follows the published cluster state, and stops writes when it cannot confirm it in time.
//
// Safety comes from time (lease_ttl, "ttl" below):
// - every instance confirms the published state with a quorum read at least every ttl/3; writes are allowed until
//   ttl after the *start* of the last read that confirmed it (Topology.writableUntil), so an instance cut off from
//   etcd, or paused (a long GC pause, SIGSTOP), stops writing within ttl of its last confirmation;
// - before a promotion the leader publishes "no primary" (epoch + 1) and waits ttl: by then every instance has
//   either seen it or stopped writing on its own;
// - every action the leader takes on a node first confirms it still holds the leader key on its lease.
import { EventEmitter } from 'node:events';
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import type { PrimaryDecision } from '../health/evaluate.js';
import type { PrimaryOwner } from '../health/primary-owner.js';
import type { ReplicationMode } from '../failover/decide.js';
import type { Clock } from '../failover/clock.js';
import type { Leadership } from '../failover/leadership.js';
import { nextState, sameState, type ClusterState } from './cluster-state.js';
import type { CoordinationStore } from './store.js';

export interface MemberSettings {
  name: string;
  leaseTtlMs: number;
  /** coordination.failsafe: when etcd is down for every instance, writes go on to the primary they agree on. */
  failsafe: boolean;
}

/** What one instance tells another directly (GET /coordination on its admin port). */
export interface PeerView {
  instance: string;
  epoch: number | null;
  primary: string | null;
  /** It read etcd successfully within lease_ttl. */
  etcd_reachable: boolean;
}

/** Asks a peer at its admin URL; null when it does not answer in time. */
export type PeerAsker = (adminUrl: string, timeoutMs: number) => Promise<PeerView | null>;

export type MemberRole = 'starting' | 'leader' | 'follower';

export class ClusterMember extends EventEmitter implements PrimaryOwner {
  role: MemberRole = 'starting';
  /** The state this instance follows (null: none published yet, or not read yet). */
  state: ClusterState | null = null;
  /** Who leads, as last read. */
  leaderName: string | null = null;
  /** Start of the last read that confirmed the published state (0: never). */
  confirmedAt = 0;
  leadershipChanges = 0;
  /** Writes go on only because every peer confirmed that etcd is down for all (coordination.failsafe). */
  failsafeActive = false;
  /** Start of the last successful read from etcd (0: never). */
  private etcdOkAt = 0;
  /** The last confirming read failed (said once at warn, when it starts and when it ends, not every round). */
  private etcdFailing = false;
  /** The other instances as last read from etcd: name → admin URL. */
  private peers = new Map<string, string>();
  /** How peers reach this instance (its admin URL), registered with every new lease. */
  private adminUrl: string | null = null;
  private lease: string | null = null;
  /** The leader's lease is surely alive until then (start of the last successful keepalive + ttl). */
  private leaseValidUntil = 0;
  /** The monitor's own view of the primary (what the leader publishes first, when nothing is published). */
  private observed: PrimaryDecision | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private stopWatch: (() => Promise<void>) | null = null;
  private stopped = false;

  constructor(
    private readonly store: CoordinationStore,
    private readonly topology: Topology,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly settings: MemberSettings,
    private readonly mode: () => ReplicationMode,
    /** A promotion or switchover is running here (the leader does not republish the primary meanwhile). */
    private readonly busy: () => boolean,
    private readonly askPeer: PeerAsker = async () => null,
  ) {
    super();
    // Until the state is confirmed nothing is written.
    topology.setWritableUntil(0);
  }

  get ttlMs(): number {
    return this.settings.leaseTtlMs;
  }

  get name(): string {
    return this.settings.name;
  }

  /** The leadership the failover controller acts under. */
  readonly leadership: Leadership = {
    leading: () => this.role === 'leader',
    confirm: async () => {
      if (this.role !== 'leader' || this.lease === null || this.clock.now() >= this.leaseValidUntil) return false;
      try {
        const held = await this.store.leader();
        return held !== null && held.name === this.settings.name && held.lease === this.lease && this.clock.now() < this.leaseValidUntil;
      } catch {
        return false;
      }
    },
  };

  /** Resolves after the first round (leadership sought, state read), whatever its outcome. */
  start(): Promise<void> {
    void this.store
      .watchState((s) => {
        if (!this.stopped) this.follow(s, null);
      })
      .then((stop) => {
        if (this.stopped) void stop().catch(() => {});
        else this.stopWatch = stop;
      })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'coordination: could not watch the cluster state; confirming by reads only'));
    const loop = () => {
      if (this.stopped) return;
      this.ticking = this.tick().finally(() => {
        this.ticking = null;
        if (!this.stopped) this.timer = setTimeout(loop, Math.max(100, Math.floor(this.ttlMs / 3)));
      });
      return this.ticking;
    };
    return loop() ?? Promise.resolve();
  }

  /** This instance's admin URL, for its peers (failsafe questions, switchovers handed to the leader). */
  advertise(url: string): void {
    this.adminUrl = url;
    if (this.lease !== null) void this.store.register(this.settings.name, JSON.stringify({ admin: url }), this.lease).catch(() => {});
  }

  /** The leader's admin URL as registered (null: unknown, or this instance leads). */
  leaderUrl(): string | null {
    return this.leaderName === null || this.leaderName === this.settings.name ? null : (this.peers.get(this.leaderName) ?? null);
  }

  /** What this instance tells a peer that asks. */
  peerView(): PeerView {
    return { instance: this.settings.name, epoch: this.state?.epoch ?? null, primary: this.state?.primary ?? null, etcd_reachable: this.etcdOkAt > 0 && this.clock.now() - this.etcdOkAt < this.ttlMs };
  }

  /** What the monitor concluded this round (in coordinated mode it never sets the primary itself). */
  observe(d: PrimaryDecision): void {
    this.observed = d;
    this.applyFencing();
  }

  /** One round: keep or seek the leadership, confirm the published state, publish one if the leader has none. */
  async tick(): Promise<void> {
    const started = this.clock.now();
    // A leader that could not renew its lease in time (cut off from etcd) no longer leads, whatever etcd says later.
    if (this.role === 'leader' && started >= this.leaseValidUntil) this.setRole('follower', 'its lease could not be renewed within lease_ttl');
    await this.leadershipRound(started).catch((err: Error) => this.log.debug({ err: err.message }, 'coordination: leadership round failed'));
    let state: ClusterState | null;
    // The confirming read's own start: the leadership calls before it may have taken up to a few call deadlines.
    const readStarted = this.clock.now();
    try {
      state = await this.store.readState();
      this.leaderName = (await this.store.leader())?.name ?? null;
      this.etcdOkAt = readStarted;
      this.peers = await this.store.members().then((m) => peerUrls(m, this.settings.name), () => this.peers);
    } catch (err) {
      // At warn the first time: an instance that never reaches etcd (a wrong CA, a wrong password) must say why it takes no writes.
      if (!this.etcdFailing) this.log.warn({ err: (err as Error).message }, 'coordination: cannot read the cluster state from etcd; writes through this instance stop (within lease_ttl) until it can');
      else this.log.debug({ err: (err as Error).message }, 'coordination: cannot confirm the cluster state');
      this.etcdFailing = true;
      if (this.settings.failsafe) await this.failsafeRound();
      return;
    }
    if (this.etcdFailing) {
      this.etcdFailing = false;
      this.log.warn('coordination: etcd answers again');
    }
    if (this.failsafeActive) {
      this.failsafeActive = false;
      this.log.warn('coordination: etcd answers again; failsafe over');
    }
    this.follow(state, readStarted);
    if (this.role === 'leader' && !this.busy()) await this.publishObserved().catch((err: Error) => this.log.warn({ err: err.message }, 'coordination: could not publish the cluster state'));
  }

  /**
   * etcd did not answer. Nobody can promote without it, so writes may go on to the agreed primary if etcd is down
   * for every instance: each known peer answers directly, says it cannot reach etcd either, and follows the same
   * state. A peer that does not answer (cut off, or dead) could be the one that still reaches etcd: then no.
   */
  private async failsafeRound(): Promise<void> {
    const s = this.state;
    if (s === null || s.primary === null) return;
    const askedAt = this.clock.now();
    const urls = [...this.peers.values()];
    const answers = await Promise.all(urls.map((u) => (u ? this.askPeer(u, Math.max(200, Math.floor(this.ttlMs / 3))).catch(() => null) : Promise.resolve(null))));
    const all = answers.every((a) => a !== null && !a.etcd_reachable && a.epoch === s.epoch && a.primary === s.primary);
    if (!all) {
      if (this.failsafeActive) this.log.warn({ peers: urls.length, answered: answers.filter((a) => a !== null).length }, 'coordination: failsafe over: not every instance confirms that etcd is down for all');
      this.failsafeActive = false;
      return;
    }
    if (!this.failsafeActive) this.log.warn({ primary: s.primary, epoch: s.epoch, peers: urls.length }, 'coordination: etcd is down for every instance (failsafe): writes go on to the agreed primary; nobody can promote');
    this.failsafeActive = true;
    this.topology.setWritableUntil(askedAt + this.ttlMs);
  }

  private async leadershipRound(started: number): Promise<void> {
    if (this.lease === null) {
      this.lease = await this.store.grantLease(Math.max(1, Math.ceil(this.ttlMs / 1000)));
      this.leaseValidUntil = started + this.ttlMs;
      if (this.adminUrl !== null) await this.store.register(this.settings.name, JSON.stringify({ admin: this.adminUrl }), this.lease);
    } else if (await this.store.keepAlive(this.lease)) {
      this.leaseValidUntil = started + this.ttlMs;
    } else {
      this.lease = null;
      this.setRole('follower', 'its lease expired');
      return;
    }
    if (this.role === 'leader') {
      const held = await this.store.leader();
      if (held === null || held.name !== this.settings.name || held.lease !== this.lease) this.setRole('follower', `the leader key is held by ${held?.name ?? 'nobody'}`);
      return;
    }
    if (await this.store.claimLeadership(this.settings.name, this.lease)) this.setRole('leader', 'it took the leader key');
    else if (this.role === 'starting') this.setRole('follower', 'another instance leads');
  }

  private setRole(role: MemberRole, why: string): void {
    if (role === this.role) return;
    const was = this.role;
    this.role = role;
    if (was !== 'starting' || role === 'leader') this.leadershipChanges++;
    this.log.warn({ instance: this.settings.name, role, was, why }, `coordination: this instance is now ${role === 'leader' ? 'the leader' : 'a follower'}`);
    this.emit('role', role);
  }

  /** A state read (confirmedAt = when the read started) or watched (not a confirmation by itself). */
  private follow(state: ClusterState | null, readStartedAt: number | null): void {
    // An older epoch than one already followed confirms nothing (a stale answer, or a regressed store).
    if (state !== null && this.state !== null && state.epoch < this.state.epoch) {
      this.log.warn({ read_epoch: state.epoch, followed_epoch: this.state.epoch }, 'coordination: ignoring a cluster state older than the one followed');
      return;
    }
    if (state !== null) {
      const changed = this.state === null || this.state.primary !== state.primary;
      this.state = state;
      if (changed) this.log.info({ primary: state.primary, epoch: state.epoch, leader: state.leader }, 'coordination: following the published primary');
      this.topology.setPrimary(state.primary);
      this.applyFencing();
    }
    if (readStartedAt !== null && state !== null) {
      this.confirmedAt = readStartedAt;
      this.topology.setWritableUntil(readStartedAt + this.ttlMs);
    }
  }

  /** Nodes that claim to be primary but are not the published one get no traffic. */
  private applyFencing(): void {
    // Before anything is published nobody is fenced: the leader's first state comes from what the monitor sees.
    if (this.state === null) return;
    const agreed = this.state.primary;
    const claim = this.topology.all().filter((n) => n.up && n.role === 'primary' && n.name !== agreed).map((n) => n.name);
    if (claim.join(',') !== [...this.topology.fenced].join(',')) this.topology.setFenced(claim);
  }

  /** The leader's first state, or its primary back after a promotion that was not published (a leader that died between). */
  private async publishObserved(): Promise<void> {
    const local = this.observed?.primary ?? null;
    if (local === null) return;
    if (this.state !== null && this.state.primary !== null) return;
    await this.publishPrimary(local);
  }

  /** The leader publishes a new primary (null: none, while a promotion is prepared); throws when it is not the leader. */
  async publishPrimary(primary: string | null): Promise<ClusterState> {
    return this.publishState(primary, undefined);
  }

  synchronous(): readonly string[] | null {
    return this.state?.synchronous ?? null;
  }

  /** The leader's upkeep applied synchronous_standby_names: published for a leader that may follow it. */
  async publishSynchronous(members: readonly string[], degraded: boolean): Promise<void> {
    const s = this.state;
    if (this.role !== 'leader' || s === null || s.primary === null || (s.synchronous.join(',') === members.join(',') && s.degraded === degraded)) return;
    await this.publishState(s.primary, members, degraded);
  }

  private async publishState(primary: string | null, synchronous: readonly string[] | undefined, degraded?: boolean): Promise<ClusterState> {
    if (this.role !== 'leader' || this.lease === null) throw new Error('not the leader');
    // Built on the latest stored state, never on what this instance last happened to see.
    const readAt = this.clock.now();
    this.follow(await this.store.readState(), readAt);
    const prev = this.state;
    const next = nextState(prev, { primary, fenced: [...this.topology.fenced].filter((n) => n !== primary), mode: this.mode(), synchronous, degraded }, this.settings.name, Date.now());
    if (sameState(this.state, next)) return this.state!;
    const started = this.clock.now();
    if (!(await this.store.publish(next, { name: this.settings.name, lease: this.lease }, prev))) {
      this.setRole('follower', 'publishing the cluster state failed: the leader key is not ours, or the state changed meanwhile');
      throw new Error('lost the leadership (or a newer state was published) while publishing the cluster state');
    }
    this.log.warn({ primary, epoch: next.epoch, synchronous: next.synchronous, degraded: next.degraded }, 'coordination: published the cluster state');
    this.follow(next, started);
    return next;
  }

  /** A promoted node takes writes: published to every instance (this one follows it at once). */
  async publish(primary: string): Promise<void> {
    await this.publishPrimary(primary);
  }

  /** Before a promotion: no instance writes to the old primary any more (published, then lease_ttl waited out). */
  async beforePromotion(): Promise<void> {
    await this.publishPrimary(null);
    await this.clock.sleep(this.ttlMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking?.catch(() => {});
    await this.stopWatch?.().catch(() => {});
    if (this.lease !== null && this.role === 'leader') await this.store.revoke(this.lease).catch(() => {});
    this.store.close();
  }
}

/** The other members' admin URLs; an entry pgsplit did not write (not JSON, no URL) counts as a peer that cannot be asked. */
export function peerUrls(members: ReadonlyMap<string, string>, self: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, info] of members) {
    if (name === self) continue;
    let admin = '';
    try {
      const v = JSON.parse(info) as { admin?: unknown };
      if (typeof v.admin === 'string' && /^https?:\/\//.test(v.admin)) admin = v.admin;
    } catch {
      /* left empty: failsafe cannot get this member's answer, so it does not hold */
    }
    out.set(name, admin);
  }
  return out;
}
