// `pgsplit route`: prints where a fresh session would send a statement, and why, without any cluster.
import { ConfigError, loadConfig, type Config } from '../config/load.js';
import type { Classification } from '../router/classification.js';
import { Classifier } from '../router/classifier.js';
import { FunctionCatalog } from '../router/functions.js';
import { initParser } from '../router/parser.js';

export const ROUTE_USAGE = `usage: pgsplit route --sql "STATEMENT" [--config FILE] [--verbose]
       pgsplit route --jsonl [--config FILE] [--verbose]   (one JSON string per stdin line)
Prints {"target": "primary" | "replica" | "session", "reason": "..."} per statement string, as a fresh
session (no transaction, no pins) would route it. --config uses the file's routing function lists;
--verbose adds what each statement does to the session.`;

export interface RouteIo {
  stdin: AsyncIterable<string | Buffer>;
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Defaults to the real loadConfig (reads the file). */
  loadConfig?: (file: string) => Config;
}

interface RouteArgs {
  sql?: string;
  jsonl: boolean;
  config?: string;
  verbose: boolean;
  help: boolean;
}

function parseArgs(args: string[]): RouteArgs {
  const out: RouteArgs = { jsonl: false, verbose: false, help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (flag: string): string => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (a === '--sql') out.sql = value(a);
    else if (a.startsWith('--sql=')) out.sql = a.slice(6);
    else if (a === '--config' || a === '-c') out.config = value(a);
    else if (a.startsWith('--config=')) out.config = a.slice(9);
    else if (a === '--jsonl') out.jsonl = true;
    else if (a === '--verbose' || a === '-v') out.verbose = true;
    else if (a === '--help' || a === '-h') out.help = true;
    else throw new Error(`unknown argument "${a}"`);
  }
  if (!out.help && (out.sql === undefined) === !out.jsonl) throw new Error('give exactly one of --sql "..." or --jsonl');
  return out;
}

function render(c: Classification, verbose: boolean): string {
  if (!verbose) return JSON.stringify({ target: c.target, reason: c.reason });
  const { target, reason, ...rest } = c;
  return JSON.stringify({ target, reason, ...rest });
}

/** Lines of the input, however it is chunked. */
async function* lines(input: AsyncIterable<string | Buffer>): AsyncGenerator<string> {
  let pending = '';
  for await (const chunk of input) {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
  if (pending !== '') yield pending;
}

/**
 * Runs `pgsplit route …` (args after "route"); resolves to the exit code: 0, 1 when some --jsonl line was not a
 * JSON string (it gets an {"error": …} line, so output lines still match non-blank input lines), 2 for bad
 * usage or config. Blank input lines are skipped.
 */
export async function runRouteCommand(args: string[], io: RouteIo): Promise<number> {
  let parsed: RouteArgs;
  try {
    parsed = parseArgs(args);
  } catch (err) {
    io.stderr.write(`pgsplit route: ${(err as Error).message}\n${ROUTE_USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    io.stdout.write(`${ROUTE_USAGE}\n`);
    return 0;
  }

  let classifier: Classifier;
  try {
    if (parsed.config !== undefined) {
      const config = (io.loadConfig ?? loadConfig)(parsed.config);
      classifier = Classifier.fromConfig(config.routing);
    } else classifier = new Classifier({ catalog: new FunctionCatalog() });
  } catch (err) {
    io.stderr.write(err instanceof ConfigError ? `${err.message}\n` : `pgsplit route: ${(err as Error).message}\n`);
    return 2;
  }
  await initParser();

  if (parsed.sql !== undefined) {
    io.stdout.write(`${render(classifier.classify(parsed.sql), parsed.verbose)}\n`);
    return 0;
  }
  let code = 0;
  let n = 0;
  for await (const raw of lines(io.stdin)) {
    n++;
    const line = raw.trim();
    if (line === '') continue;
    let sql: unknown;
    try {
      sql = JSON.parse(line);
    } catch {
      sql = undefined;
    }
    // Corpus-style objects ({"label": …, "sql": …}) work too, so a routing corpus can be piped in as it is.
    if (typeof sql === 'object' && sql !== null && typeof (sql as { sql?: unknown }).sql === 'string') sql = (sql as { sql: string }).sql;
    if (typeof sql !== 'string') {
      io.stdout.write(`${JSON.stringify({ error: `line ${n}: expected a JSON string` })}\n`);
      code = 1;
      continue;
    }
    io.stdout.write(`${render(classifier.classify(sql), parsed.verbose)}\n`);
  }
  return code;
}
