// A worker's admin console backend: each command goes to the coordinator (which owns Control) and its answer is awaited with a deadline.
import type { Config } from '../config/schema.js';
import type { ConsoleCommand } from '../console/parse-command.js';
import { consoleError, type ConsoleReply } from '../console/reply.js';
import type { ConsoleBackend } from '../console/console-session.js';
import type { FromWorker } from './messages.js';

/** SHOW and the quick commands; a PAUSE waits for every worker, a RELOAD for every worker to confirm it. */
const QUICK_MS = 10_000;
const RELOAD_MS = 60_000;

/** How long a worker waits for the coordinator's answer to `c`: a switchover may take its whole timeouts. */
export function commandDeadlineMs(c: ConsoleCommand, config: Pick<Config, 'failover'>): number {
  if (c.kind === 'switchover') return config.failover.switchover_timeout + config.failover.promote_timeout + 30_000;
  if (c.kind === 'reload') return RELOAD_MS;
  return QUICK_MS;
}

export class ConsoleRelay implements ConsoleBackend {
  private nextId = 1;
  /** Bounded by the console sessions of this worker: each waits for one answer at a time. */
  private readonly waiting = new Map<number, (r: ConsoleReply) => void>();

  constructor(
    private readonly send: (m: FromWorker) => boolean,
    private readonly config: () => Pick<Config, 'failover'>,
  ) {}

  run(command: ConsoleCommand): Promise<ConsoleReply> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      const ms = commandDeadlineMs(command, this.config());
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(consoleError('57014', `pgsplit: the coordinator did not answer ${command.kind.toUpperCase()} within ${ms} ms`, 'It may still be carrying it out: look again with SHOW NODES.'));
      }, ms);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(r);
      });
      if (!this.send({ t: 'console', id, command })) this.answered(id, consoleError('57P03', 'pgsplit: this worker has lost its coordinator'));
    });
  }

  /** The coordinator's answer to request `id` (late answers, after the deadline, are dropped). */
  answered(id: number, reply: ConsoleReply): void {
    this.waiting.get(id)?.(reply);
  }
}
