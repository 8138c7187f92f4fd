// A planned switchover: hold new writes, let open transactions finish, stop the old primary's writes, wait for the target to replay everything, promote it, resume.
import type { Logger } from '../util/logger.js';
import type { NodeState, Topology } from '../topology/topology.js';
import { SwitchoverRefused } from '../errors.js';
import { maskConninfo } from '../config/redact.js';
import { parseLsn } from '../topology/lsn.js';
import { promotable } from './decide.js';
import type { NodeActions } from './node-actions.js';
import type { Clock } from './clock.js';
import { nodeVars, type HookRunner } from './hooks.js';
import type { FailoverEvent } from './history.js';

export interface SwitchoverConfig {
  switchoverTimeoutMs: number;
  promoteTimeoutMs: number;
  demoteCommand: string;
}

export interface SwitchoverContext {
  topology: Topology;
  actions: NodeActions;
  clock: Clock;
  hooks: HookRunner;
  log: Logger;
  /** Resolves once every process serving clients holds new writes too (workers learn of the pause over IPC). */
  writesPaused(): Promise<void>;
  /** Other instances stop writing to the old primary too (published, then waited for). */
  beforePromotion(): Promise<void>;
  /** Writes go to the promoted node (the controller's one way of changing the primary). */
  takeWrites(node: NodeState): Promise<void>;
  /** Nothing was promoted: the old primary is published as the primary again. */
  keepPrimary(node: NodeState): Promise<void>;
}

// How often open transactions and the target's replay are looked at again while waiting.
const OPEN_POLL_MS = 20;
const REPLAY_POLL_MS = 10;

/** Refuses (SwitchoverRefused) a switchover to `to` that cannot be done now; returns the old primary and the target. */
export function checkSwitchover(topology: Topology, to: string): { old: NodeState; target: NodeState } {
  const target = topology.node(to);
  const old = topology.primary;
  if (!target) throw new SwitchoverRefused(`no node named "${to}" (nodes: ${topology.all().map((n) => n.name).join(', ')})`);
  if (!old || !old.up) throw new SwitchoverRefused('no primary is up to switch over from');
  if (target.name === old.name) throw new SwitchoverRefused(`${to} is already the primary`);
  if (!target.up || target.role !== 'replica') throw new SwitchoverRefused(`${to} is not a replica that is up`);
  if (!promotable(target)) throw new SwitchoverRefused(`${to} may not be promoted (delayed or tagged nofailover)`);
  return { old, target };
}

/**
 * Clients' statements are delayed, not failed, and no commit is lost. On failure nothing was promoted: the old
 * primary gets its writes back, writes resume there, and the error is thrown (the event records it).
 */
export async function runSwitchover(x: SwitchoverContext, old: NodeState, target: NodeState, cfg: SwitchoverConfig, event: FailoverEvent): Promise<void> {
  const { actions, clock } = x;
  const started = clock.now();
  x.log.warn({ old_primary: old.name, new_primary: target.name }, 'switchover: holding new writes');
  x.topology.pauseWrites();
  try {
    await x.writesPaused();
    await x.beforePromotion();
    const deadline = started + cfg.switchoverTimeoutMs;
    // 1. Open transactions on the old primary finish (new ones wait in the sessions).
    for (;;) {
      const open = await actions.openTransactions(old);
      if (open === 0) break;
      if (clock.now() > deadline) throw new Error(`${open} transaction(s) still open on ${old.name} after failover.switchover_timeout`);
      await clock.sleep(OPEN_POLL_MS);
    }
    // 2. The old primary stops taking writes; its last WAL position is what the target must have.
    const finalLsn = await actions.stopWrites(old, !cfg.demoteCommand);
    if (cfg.demoteCommand) {
      const code = await x.hooks(cfg.demoteCommand, { PGSPLIT_EVENT: 'demote', ...nodeVars('PGSPLIT_NODE', old), ...nodeVars('PGSPLIT_NEW_PRIMARY', target) });
      if (code !== 0) throw new Error(`failover.demote_command exited with ${code}`);
    }
    // 3. The target replays up to that position.
    const want = parseLsn(finalLsn) ?? 0;
    while ((await actions.replayLsn(target)) < want) {
      if (clock.now() > deadline) throw new Error(`${target.name} did not catch up to ${finalLsn} within failover.switchover_timeout`);
      await clock.sleep(REPLAY_POLL_MS);
    }
    event.promoted_receive_lsn = finalLsn;
    // 4. Promote and route writes there.
    await actions.promote(target, cfg.promoteTimeoutMs);
    await x.takeWrites(target);
  } catch (err) {
    if (!cfg.demoteCommand) await actions.allowWrites(old).catch(() => {});
    await x.keepPrimary(old).catch((e: Error) => x.log.error({ err: e.message }, 'switchover: could not publish the old primary again'));
    x.topology.resumeWrites();
    event.error = (err as Error).message;
    event.duration_ms = clock.now() - started;
    x.log.error({ err: maskConninfo(event.error) }, 'switchover failed; the old primary keeps its role');
    throw err;
  }
  x.topology.resumeWrites();
  event.duration_ms = clock.now() - started;
  x.log.warn({ old_primary: old.name, new_primary: target.name, duration_ms: event.duration_ms }, 'switchover: new primary takes writes');
}
