// The process logger (pino): structured JSON lines, with secrets redacted wherever they might appear.
import { pino, destination as pinoDestination, type Logger, type DestinationStream } from 'pino';

export type { Logger };

const redact = {
  paths: ['password', '*.password', '*.*.password', 'config.users[*].password', 'config.monitor.password', 'secret', '*.secret'],
  censor: '***',
};

export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  return pino({ level, redact, base: { name: 'pgsplit' } }, destination ?? pinoDestination({ dest: 2, sync: false }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
