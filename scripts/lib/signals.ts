// Shutdown-signal handling for the scripts: one asynchronous handler for SIGINT/SIGTERM/SIGHUP.
//
// Under `tsx` a handler that blocks (the harness's synchronous clean-up) is SIGKILLed half-way, so the
// scripts start the cluster with `signalHandlers: false` and clean up with the async cluster.stop().

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Installs `handler` for the shutdown signals; returns a function that removes it. */
export function onShutdownSignal(handler: (signal: NodeJS.Signals) => void): () => void {
  const fns = SIGNALS.map((s) => [s, () => handler(s)] as const);
  for (const [s, fn] of fns) process.on(s, fn);
  return () => {
    for (const [s, fn] of fns) process.off(s, fn);
  };
}
