// Temp directories the harnesses own: made under a name prefix with an info file naming the owner's PID, torn down on stop, process exit and signals (cleanup.ts), and reaped by a later run when their owner died without doing it (SIGKILL).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { registerCleanup } from './cleanup.js';
import { isAlive, runsFrom } from './processes.js';

/** What every info file holds: whose directory it is. */
export interface OwnerInfo {
  dir: string;
  /** PID of the process that made the dir; once it is gone, the dir is stale. */
  ownerPid: number;
}

/** One kind of harness directory (a PostgreSQL cluster's, an etcd cluster's, ...). */
export interface DirKind<I extends OwnerInfo> {
  /** Name prefix, e.g. 'pgsplit-etcd-': a later run finds stale dirs of this kind by it. */
  prefix: string;
  /** The JSON file in the dir that holds I (the owner and whatever teardown needs). */
  infoFile: string;
  /** Names one in the log line when a stale one is reaped, e.g. 'etcd cluster'. */
  what: string;
  /**
   * Stops whatever runs from the dir and removes it. Synchronous, since it also runs in 'exit' listeners where
   * asynchronous work never happens; best effort, never throws.
   */
  teardown(info: I): void;
}

/** rm -rf, best effort. */
export function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

/** The info of harnesses whose processes are known by PID: etcd lists its members' (`pids`), haproxy and others one `pid`. */
export interface ProcessDirInfo extends OwnerInfo {
  pids?: number[];
  pid?: number | null;
}

/**
 * A DirKind teardown for ProcessDirInfo: SIGKILLs each recorded PID that is alive and ours (this process made it, or
 * its command line still names the dir: a dead owner's PID may have been reused), then removes the dir.
 */
export function killPidsAndRemove(info: ProcessDirInfo): void {
  for (const pid of [...(info.pids ?? []), ...(info.pid ? [info.pid] : [])]) {
    try {
      if (isAlive(pid) && (info.ownerPid === process.pid || runsFrom(pid, info.dir))) process.kill(pid, 'SIGKILL');
    } catch {
      /* best effort */
    }
  }
  removeDir(info.dir);
}

/** Tears down the dirs of `kind` in baseDir whose owner is gone (processes that died without cleaning up, e.g. SIGKILL). */
export function reapStaleDirs<I extends OwnerInfo>(kind: DirKind<I>, baseDir: string, log: (line: string) => void = () => {}): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(baseDir).filter((e) => e.startsWith(kind.prefix));
  } catch {
    return;
  }
  for (const e of entries) {
    let info: I;
    try {
      info = JSON.parse(fs.readFileSync(path.join(baseDir, e, kind.infoFile), 'utf8')) as I;
    } catch {
      // No info file (yet): its owner may be writing it now, so it is not ours to judge.
      continue;
    }
    if (!info.ownerPid || isAlive(info.ownerPid)) continue;
    log(`reaping stale ${kind.what} ${info.dir} (owner pid ${info.ownerPid} is gone)`);
    kind.teardown(info);
  }
}

/** A new dir baseDir/PREFIXxxxxxx (baseDir default os.tmpdir(), made if missing), after reaping stale dirs of the kind there. */
export function makeTempDir<I extends OwnerInfo>(kind: DirKind<I>, o: { baseDir?: string; log?: (line: string) => void } = {}): string {
  const baseDir = path.resolve(o.baseDir ?? os.tmpdir());
  fs.mkdirSync(baseDir, { recursive: true });
  reapStaleDirs(kind, baseDir, o.log);
  return fs.mkdtempSync(path.join(baseDir, kind.prefix));
}

export interface OwnedDir {
  /** Writes the info file again (a PID changed). Best effort: the dir may be going away. */
  save(): void;
  /** The owner has stopped everything and removed the dir itself (stop()): no clean-up on exit any more. */
  release(): void;
  /** kind.teardown(info) now, then release(): what stop() does once its processes are gone. */
  dispose(): void;
}

/**
 * Writes `info` to the dir's info file (so a later run can reap the dir should this process die) and registers
 * kind.teardown(info) to run on process exit and, unless signals is false, on SIGINT/SIGTERM/SIGHUP. The teardown
 * sees `info` as it is then: keep its PIDs current (and call save()).
 */
export function ownTempDir<I extends OwnerInfo>(kind: DirKind<I>, info: I, o: { signals?: boolean } = {}): OwnedDir {
  const file = path.join(info.dir, kind.infoFile);
  fs.writeFileSync(file, JSON.stringify(info, null, 2));
  const release = registerCleanup(() => kind.teardown(info), { signals: o.signals });
  return {
    save() {
      try {
        fs.writeFileSync(file, JSON.stringify(info, null, 2));
      } catch {
        /* the dir may be going away during stop() */
      }
    },
    release,
    dispose() {
      try {
        kind.teardown(info);
      } finally {
        release();
      }
    },
  };
}
