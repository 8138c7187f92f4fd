// Who the primary is, decided in one place: probe rounds report what they see, failover asks for a change; the owner alone sets it on the topology.
import type { Logger } from '../util/logger.js';
import type { Topology } from '../topology/topology.js';
import type { PrimaryDecision } from './evaluate.js';

export interface PrimaryOwner {
  /** A probe round's view: the node it would call primary, and the others that claim the role. */
  observe(d: PrimaryDecision): void;
  /** Before a promotion: from now on nobody writes to the old primary (may wait). */
  beforePromotion(): Promise<void>;
  /** A promoted node takes writes. */
  publish(primary: string): Promise<void>;
  /** The synchronous standbys another instance applied on the current primary (null: only this instance knows). */
  synchronous(): readonly string[] | null;
  /** The synchronous standbys now in force on the primary (and whether fewer than the mode wants), for whoever decides a failover next. */
  publishSynchronous(members: readonly string[], degraded: boolean): Promise<void>;
}

/** One instance alone: probe rounds decide (a claimant that is not the primary is fenced), and failover's promotion is taken at once. */
export class LocalPrimary implements PrimaryOwner {
  constructor(
    private readonly topology: Topology,
    private readonly log: Logger,
  ) {}

  observe(d: PrimaryDecision): void {
    const t = this.topology;
    if (d.conflicting.join(',') !== [...t.fenced].join(',')) {
      if (d.conflicting.length > 0) this.log.warn({ primary: d.primary, fenced: d.conflicting }, 'another node claims to be primary; it is fenced (gets no traffic)');
      t.setFenced(d.conflicting);
    }
    const current = t.primary?.name ?? null;
    if (d.primary !== current) {
      this.log.info({ primary: d.primary, previous: current }, 'primary changed');
      t.setPrimary(d.primary);
    }
  }

  async beforePromotion(): Promise<void> {}

  async publish(primary: string): Promise<void> {
    this.topology.setPrimary(primary);
  }

  synchronous(): null {
    return null;
  }

  async publishSynchronous(): Promise<void> {}
}
