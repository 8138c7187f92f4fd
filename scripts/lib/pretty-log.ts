// A pino logger for the demo that prints readable one-line records ("12:00:01 INFO  primary changed primary=pg1") instead of JSON.
import { pino, type Logger } from 'pino';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'v']);

function fmtValue(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

export function formatRecord(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toTimeString().slice(0, 8);
  const level = LEVELS[rec.level as number] ?? String(rec.level);
  const fields = Object.entries(rec)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${fmtValue(v)}`)
    .join(' ');
  return `  [pgsplit] ${time} ${level} ${String(rec.msg ?? '')}${fields ? `  ${fields}` : ''}`;
}

export function prettyLogger(level = 'info', out: NodeJS.WritableStream = process.stdout): Logger {
  const redact = { paths: ['password', '*.password', '*.*.password', 'config.users[*].password', 'secret', '*.secret'], censor: '***' };
  return pino({ level, redact, base: { name: 'pgsplit' } }, { write: (s: string) => void out.write(`${formatRecord(s)}\n`) });
}
