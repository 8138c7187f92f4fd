// What the admin console answers a command with, as plain data: it crosses the worker IPC channel as JSON.

export type Cell = string | null;

export type ConsoleReply =
  /** A result set of text columns; `notice` goes out as a NoticeResponse before it. */
  | { kind: 'rows'; columns: readonly string[]; rows: Cell[][]; tag: string; notice?: string }
  /** A command done: CommandComplete with `tag`. */
  | { kind: 'done'; tag: string; notice?: string }
  | { kind: 'error'; sqlstate: string; message: string; detail?: string; hint?: string };

export const consoleError = (sqlstate: string, message: string, detail?: string, hint?: string): ConsoleReply => ({ kind: 'error', sqlstate, message, detail, hint });
