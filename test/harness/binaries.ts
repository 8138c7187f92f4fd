// Finds the programs the harnesses and scripts run (etcd, haproxy, prometheus, the PostgreSQL server binaries, poolers): an environment override, then PATH, then the usual install paths.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The directories of PATH, in order. */
export function pathDirs(): string[] {
  return (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
}

export interface BinarySpec {
  /** Environment variable naming the binary (e.g. PGSPLIT_ETCD_BIN). */
  env?: string;
  /** Looked in after PATH, e.g. '/usr/sbin' (Debian installs daemons there, often not on a user's PATH). */
  fallbackDirs?: string[];
}

/** Where `name` is: the spec's environment variable when set, then PATH, then fallbackDirs. Null when missing. */
export function findBinary(name: string, spec: BinarySpec = {}): string | null {
  const explicit = spec.env ? process.env[spec.env] : undefined;
  // An explicit setting that is wrong should fail loudly rather than silently use another install.
  if (explicit) return isExecutable(explicit) ? path.resolve(explicit) : null;
  for (const dir of pathDirs()) {
    if (isExecutable(path.join(dir, name))) return path.resolve(dir, name);
  }
  for (const dir of spec.fallbackDirs ?? []) {
    const p = path.join(dir, name);
    if (isExecutable(p)) return p;
  }
  return null;
}

/** findBinary, or an error that says where it looked and `install` (how to get it). */
export function requireBinary(name: string, spec: BinarySpec, install: string): string {
  const bin = findBinary(name, spec);
  if (bin) return bin;
  const places = ['PATH', ...(spec.fallbackDirs ?? []).map((d) => path.join(d, name))];
  const explicit = spec.env ? process.env[spec.env] : undefined;
  throw new Error(
    `${name} not found (looked in ${places.slice(0, -1).join(', ')}${places.length > 1 ? ' and ' : ''}${places.at(-1)}` +
      (explicit ? `; ${spec.env}=${explicit} is not executable` : '') +
      `). ${install}`,
  );
}

const PG_SERVER_BINS = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres', 'psql'];

function hasServerBins(dir: string): boolean {
  return PG_SERVER_BINS.every((b) => fs.existsSync(path.join(dir, b)));
}

function versionKey(dirName: string): number[] {
  return dirName.split('.').map((p) => Number.parseInt(p, 10) || 0);
}

/**
 * The directory of the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup, postgres, psql): PGSPLIT_PG_BINDIR,
 * then `pg_config --bindir`, then PATH, then Debian's /usr/lib/postgresql/VERSION/bin, newest first. Null when missing.
 */
export function findPgBinDir(): string | null {
  const explicit = process.env.PGSPLIT_PG_BINDIR;
  // An explicit setting that is wrong should fail loudly rather than silently use another install.
  if (explicit) return hasServerBins(explicit) ? path.resolve(explicit) : null;

  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (pgConfig.status === 0) {
    const dir = pgConfig.stdout.trim();
    if (dir && hasServerBins(dir)) return dir;
  }

  for (const dir of pathDirs()) {
    if (hasServerBins(dir)) return path.resolve(dir);
  }

  const debianRoot = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(debianRoot);
  } catch {
    return null;
  }
  versions.sort((a, b) => {
    const ka = versionKey(a);
    const kb = versionKey(b);
    for (let i = 0; i < Math.max(ka.length, kb.length); i++) {
      const d = (kb[i] ?? 0) - (ka[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  });
  for (const v of versions) {
    const dir = path.join(debianRoot, v, 'bin');
    if (hasServerBins(dir)) return dir;
  }
  return null;
}
