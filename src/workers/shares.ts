// How many workers run, and each one's share of the pool bounds that hold for the whole instance (pool.size, pool.min_idle).
import type { Config } from '../config/schema.js';

/**
 * workers: auto is one per core. pool.size split over more workers than it has connections would leave some with
 * none. (listen.max_client_connections is not split: the coordinator accepts every client and counts them.)
 */
export function resolveWorkers(config: Pick<Config, 'workers' | 'pool'>, cores: number): { count: number; reducedBy: string | null } {
  const wanted = config.workers === 'auto' ? Math.max(1, cores) : config.workers;
  const limits: [string, number][] = [['pool.size', config.pool.size]];
  let count = wanted;
  let reducedBy: string | null = null;
  for (const [key, value] of limits) {
    if (value < count) {
      count = value;
      reducedBy = key;
    }
  }
  return { count, reducedBy };
}

/** Worker `index` of `count` gets total / count, the first ones one more for the remainder: the shares add up to total. */
export function shareOf(total: number, index: number, count: number): number {
  return Math.floor(total / count) + (index < total % count ? 1 : 0);
}

/** The config a worker serves: the instance's, with its share of each instance-wide bound. */
export function workerConfig(config: Config, index: number, count: number): Config {
  if (count <= 1) return config;
  return {
    ...config,
    pool: { ...config.pool, size: shareOf(config.pool.size, index, count), min_idle: shareOf(config.pool.min_idle, index, count) },
  };
}
