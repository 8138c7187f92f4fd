#!/usr/bin/env node
// Entry point for the `pgsplit` command: runs the compiled CLI (built by `npm ci` via the prepare script).
import('../dist/cli/main.js').then((m) => m.main(process.argv.slice(2))).catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
