// Reloading the config file: load, plan with the reload rules, apply, log and count. SIGHUP, POST /reload and the admin console all call reloadConfig().
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { planReload, type KeptKey, type ReloadRuntime } from '../config/reload-plan.js';
import { loadTls } from '../tls/load.js';
import { TlsConfigError } from '../tls/files.js';
import type { Logger } from '../util/logger.js';

export interface ReloadResult {
  /** applied: every change is live; partial: some keys kept their running value (see kept); rejected: nothing changed. */
  result: 'applied' | 'partial' | 'rejected';
  /** Changed keys now in effect ("routing.parse_cache_size", "nodes[pg4]" for an added or removed node …). */
  applied: string[];
  /** Changed keys that keep their running value until a restart, and why. */
  kept: KeptKey[];
  /** Why a rejected file was rejected: the key and what is wrong with it. */
  error?: string;
  /** workers: N: worker processes that confirmed they run the new config, of those serving. */
  workers?: { confirmed: number; serving: number };
}

export type ReloadCounts = Record<ReloadResult['result'], number>;

/** The process a Reloader changes: a single pgsplit or a coordinator with its workers. */
export interface ReloadTarget {
  current(): Config;
  runtime(): ReloadRuntime;
  /** Put a planned config in place; resolves once every process runs it. */
  apply(config: Config): Promise<Pick<ReloadResult, 'workers'> | void>;
}

export class Reloader {
  readonly counts: ReloadCounts = { applied: 0, partial: 0, rejected: 0 };
  // One reload at a time: a SIGHUP arriving during a POST /reload plans against the config that one put in place.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly target: ReloadTarget,
    private readonly log: Logger,
    /** The file pgsplit was started from (null: started from a parsed config, as tests do). */
    readonly file: string | null,
  ) {}

  /** Re-read `file` (default: the one pgsplit was started from) and apply what may change live. */
  reloadConfig(file: string | null = this.file): Promise<ReloadResult> {
    return this.serialized(() => {
      if (file === null) return this.finish({ result: 'rejected', applied: [], kept: [], error: 'pgsplit was not started from a config file: there is nothing to re-read' });
      let next: Config;
      try {
        next = loadConfig(file);
      } catch (err) {
        const error = err instanceof ConfigError ? err.issues.map((i) => `${i.path}: ${i.message}`).join('; ') : (err as Error).message;
        return this.finish({ result: 'rejected', applied: [], kept: [], error });
      }
      return this.apply(next);
    });
  }

  /** Apply an already parsed config (tests, and callers that build one). */
  reload(next: Config): Promise<ReloadResult> {
    return this.serialized(() => this.apply(next));
  }

  private serialized(run: () => Promise<ReloadResult>): Promise<ReloadResult> {
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  private async apply(next: Config): Promise<ReloadResult> {
    let plan;
    try {
      plan = planReload(this.target.current(), next, this.target.runtime());
    } catch (err) {
      return this.finish({ result: 'rejected', applied: [], kept: [], error: (err as Error).message });
    }
    if (!plan.ok) return this.finish({ result: 'rejected', applied: [], kept: [], error: plan.error });
    // Certificate files are re-read on every reload; one that cannot be loaded would be half applied, so none is.
    try {
      loadTls(plan.config, null);
    } catch (err) {
      return this.finish({ result: 'rejected', applied: [], kept: [], error: err instanceof TlsConfigError ? err.message : `TLS: ${(err as Error).message}` });
    }
    const done = await this.target.apply(plan.config);
    return this.finish({ result: plan.kept.length > 0 ? 'partial' : 'applied', applied: plan.applied, kept: plan.kept, ...(done ?? {}) });
  }

  private async finish(r: ReloadResult): Promise<ReloadResult> {
    this.counts[r.result]++;
    // Logged after applying, so that a changed log.level already decides whether these lines appear.
    if (r.result === 'rejected') this.log.error({ error: r.error }, 'config reload rejected; the running config is kept');
    else if (r.result === 'partial') this.log.warn({ applied: r.applied, kept: r.kept, workers: r.workers }, 'config reloaded; some keys keep their running value until pgsplit restarts');
    else this.log.info({ applied: r.applied, workers: r.workers }, 'config reloaded');
    return r;
  }
}
