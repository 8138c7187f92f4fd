// Parses the admin console's commands (SHOW NODES, BAN pg2, …) from a simple Query's text; pure.
import type { ConsoleReply } from './reply.js';

export const SHOW_TOPICS = ['nodes', 'pools', 'clients', 'servers', 'stats', 'statements', 'config', 'version', 'help'] as const;
export type ShowTopic = (typeof SHOW_TOPICS)[number];

export type ConsoleCommand =
  | { kind: 'show'; topic: ShowTopic }
  | { kind: 'reload' }
  | { kind: 'pause' }
  | { kind: 'resume' }
  | { kind: 'ban'; node: string }
  | { kind: 'unban'; node: string }
  | { kind: 'switchover'; node: string }
  | { kind: 'reset-stats' };

/** Every command with its arguments, one line each: the 42601 hint and SHOW HELP. */
export const COMMANDS: readonly [syntax: string, what: string][] = [
  ['SHOW NODES', 'every node: role, health, lag, bans, fencing, upstream, weight and tags'],
  ['SHOW POOLS', 'server connection pools per node, user and database'],
  ['SHOW CLIENTS', 'one row per client connection'],
  ['SHOW SERVERS', 'one row per server connection'],
  ['SHOW STATS', 'units, bytes and time per node and target'],
  ['SHOW STATEMENTS', 'statement statistics: calls, time, rows, errors and routing per normalized statement'],
  ['SHOW CONFIG', 'the running config, secrets masked'],
  ['SHOW VERSION', 'the pgsplit version'],
  ['SHOW HELP', 'this list'],
  ['RELOAD', 'read the config file again and apply it'],
  ['PAUSE', 'hold every new statement until RESUME (or admin.pause_timeout)'],
  ['RESUME', 'let held statements run'],
  ['BAN node', 'take a replica out of reads until UNBAN'],
  ['UNBAN node', 'lift an operator ban'],
  ['SWITCHOVER node', 'planned promotion of a replica'],
  ['RESET STATS', 'forget the statement statistics (every worker\'s)'],
];

/** At most this many commands in one Query (a client must not make one message cost unbounded work). */
export const MAX_COMMANDS = 16;

export type Parsed = { ok: true; commands: ConsoleCommand[] } | { ok: false; error: Extract<ConsoleReply, { kind: 'error' }> };

const NODE_NAME = /^[A-Za-z0-9_.-]+$/;

function syntaxError(message: string): Parsed {
  return {
    ok: false,
    error: { kind: 'error', sqlstate: '42601', message, hint: `The admin console knows: ${COMMANDS.map(([c]) => c).join(', ')}.` },
  };
}

/**
 * The statements of `text` split at semicolons outside quotes, with comments (-- and non-nested /* *\/) dropped.
 * Empty statements are left out; null when a quote or comment is not closed.
 */
export function splitStatements(text: string): string[] | null {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
      cur += ' ';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) return null;
      i = end + 2;
      cur += ' ';
    } else if (c === "'" || c === '"') {
      // A doubled quote inside stays part of the literal.
      let j = i + 1;
      for (;;) {
        const k = text.indexOf(c, j);
        if (k < 0) return null;
        if (text[k + 1] === c) {
          j = k + 2;
          continue;
        }
        j = k + 1;
        break;
      }
      cur += text.slice(i, j);
      i = j;
    } else if (c === ';') {
      if (cur.trim() !== '') out.push(cur.trim());
      cur = '';
      i++;
    } else {
      cur += c;
      i++;
    }
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out;
}

/** A node name as written: bare (case kept, as in the config), 'quoted' or "quoted". */
function nodeName(word: string | undefined): string | null {
  if (word === undefined) return null;
  const quoted = /^'((?:[^']|'')*)'$|^"((?:[^"]|"")*)"$/.exec(word);
  const name = quoted ? (quoted[1] ?? quoted[2]!).replace(/''|""/g, (q) => q[0]!) : word;
  return NODE_NAME.test(name) ? name : null;
}

function parseOne(stmt: string): ConsoleCommand | string {
  const words = stmt.split(/\s+/);
  const verb = words[0]!.toLowerCase();
  const rest = words.slice(1);
  switch (verb) {
    case 'show': {
      const topic = rest[0]?.toLowerCase();
      if (rest.length !== 1 || !(SHOW_TOPICS as readonly string[]).includes(topic!)) return `SHOW takes one of ${SHOW_TOPICS.map((t) => t.toUpperCase()).join(', ')}`;
      return { kind: 'show', topic: topic as ShowTopic };
    }
    case 'reload':
    case 'pause':
    case 'resume':
      if (rest.length > 0) return `${verb.toUpperCase()} takes no arguments`;
      return { kind: verb };
    case 'ban':
    case 'unban':
    case 'switchover': {
      // SWITCHOVER TO pg2 reads naturally too.
      const args = verb === 'switchover' && rest.length === 2 && rest[0]!.toLowerCase() === 'to' ? rest.slice(1) : rest;
      const node = args.length === 1 ? nodeName(args[0]) : null;
      if (node === null) return `${verb.toUpperCase()} takes one node name (letters, digits, "_", "." or "-")`;
      return { kind: verb, node };
    }
    case 'reset':
      if (rest.length !== 1 || rest[0]!.toLowerCase() !== 'stats') return 'RESET takes STATS';
      return { kind: 'reset-stats' };
    default:
      return `unknown admin console command "${stmt.length > 60 ? `${stmt.slice(0, 57)}...` : stmt}"`;
  }
}

/** The commands of one Query's text, or the 42601 error that answers it (nothing runs when one statement is wrong). */
export function parseCommands(text: string): Parsed {
  const stmts = splitStatements(text);
  if (stmts === null) return syntaxError('unterminated quoted string or comment');
  if (stmts.length > MAX_COMMANDS) return syntaxError(`at most ${MAX_COMMANDS} commands in one query`);
  const commands: ConsoleCommand[] = [];
  for (const stmt of stmts) {
    const c = parseOne(stmt);
    if (typeof c === 'string') return syntaxError(c);
    commands.push(c);
  }
  return { ok: true, commands };
}
