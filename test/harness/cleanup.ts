// One registry of synchronous clean-up actions (kill what a harness started, remove its temp dir) run on process exit and on SIGINT/SIGTERM/SIGHUP, with its listeners installed once; and the scripts' hook for their own asynchronous shutdown.

export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

interface Action {
  run: () => void;
  signals: boolean;
}

// Newest last; run newest first, so that what was started on top of something (a proxy in front of a cluster) goes first.
const actions: Action[] = [];
let exitInstalled = false;
let signalsInstalled = false;

/**
 * Runs `run` when the process exits and, unless `signals` is false, on SIGINT/SIGTERM/SIGHUP. It must be synchronous
 * and quick ('exit' listeners cannot wait for anything) and must not throw. Returns the function that takes it back
 * once its owner has cleaned up by itself (stop()).
 *
 * signals: false is for scripts with their own asynchronous signal handler: under tsx a handler that blocks is
 * SIGKILLed half-way through, so they stop things asynchronously and leave only the 'exit' clean-up to this.
 */
export function registerCleanup(run: () => void, o: { signals?: boolean } = {}): () => void {
  const action: Action = { run, signals: o.signals ?? true };
  actions.push(action);
  sync();
  return () => {
    remove(action);
    sync();
  };
}

function remove(a: Action): boolean {
  const i = actions.indexOf(a);
  if (i < 0) return false;
  actions.splice(i, 1);
  return true;
}

function runActions(due: (a: Action) => boolean): void {
  for (const a of [...actions].reverse()) {
    if (!due(a) || !remove(a)) continue;
    try {
      a.run();
    } catch {
      /* best effort: the other actions still run */
    }
  }
}

function onExit(): void {
  runActions(() => true);
  sync();
}

function onSignal(sig: NodeJS.Signals): void {
  // Alone, we re-raise the signal below and the process dies without an 'exit' event: everything must go now.
  const alone = process.listenerCount(sig) === 1;
  runActions((a) => a.signals || alone);
  sync();
  // Our listener replaced the default "terminate" action; restore it unless someone else (the test runner, a
  // script's handler) handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

/** Listeners while there is something to clean up, none otherwise (a finished harness leaves the process as it was). */
function sync(): void {
  const wantExit = actions.length > 0;
  if (wantExit && !exitInstalled) {
    // Prepended because vitest's own 'exit' listener calls process.exit() again, which ends the process
    // immediately and skips every listener registered after it.
    process.prependListener('exit', onExit);
  } else if (!wantExit && exitInstalled) {
    process.off('exit', onExit);
  }
  exitInstalled = wantExit;
  const wantSignals = actions.some((a) => a.signals);
  if (wantSignals && !signalsInstalled) {
    for (const s of SHUTDOWN_SIGNALS) process.prependListener(s, onSignal);
  } else if (!wantSignals && signalsInstalled) {
    for (const s of SHUTDOWN_SIGNALS) process.off(s, onSignal);
  }
  signalsInstalled = wantSignals;
}

/**
 * Installs an asynchronous handler for SIGINT/SIGTERM/SIGHUP (the scripts': stop pgsplit, the poolers and the cluster,
 * then exit); returns a function that removes it.
 */
export function onShutdownSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  const fns = SHUTDOWN_SIGNALS.map((s) => [s, () => handler(s)] as const);
  for (const [s, fn] of fns) process.on(s, fn);
  return () => {
    for (const [s, fn] of fns) process.off(s, fn);
  };
}
