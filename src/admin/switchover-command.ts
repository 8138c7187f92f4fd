// `pgsplit switchover --to NODE`: asks a running pgsplit (its admin port) for a planned switchover and prints the answer.
import { loadConfig } from '../config/load.js';

export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = 'usage: pgsplit switchover --to NODE [--admin HOST:PORT | --config FILE]';

/** Exit status: 0 done, 1 refused or failed, 2 usage. */
export async function runSwitchoverCommand(argv: string[], io: CommandIo): Promise<number> {
  let to: string | undefined;
  let admin: string | undefined;
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (!v) throw new Error(`${a} needs a value`);
      return v;
    };
    try {
      if (a === '--to') to = value();
      else if (a === '--admin') admin = value();
      else if (a === '--config' || a === '-c') config = value();
      else throw new Error(`unknown argument "${a}"`);
    } catch (err) {
      io.stderr.write(`pgsplit switchover: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
  }
  config ??= process.env.PGSPLIT_CONFIG;
  if (!to || (!admin && !config)) {
    io.stderr.write(`pgsplit switchover: ${!to ? 'which replica? --to NODE' : 'where is pgsplit? --admin HOST:PORT or --config FILE'}\n${USAGE}\n`);
    return 2;
  }
  if (!admin) {
    try {
      const c = loadConfig(config!);
      admin = `${c.admin.host === '0.0.0.0' ? '127.0.0.1' : c.admin.host}:${c.admin.port}`;
    } catch (err) {
      io.stderr.write(`pgsplit switchover: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const url = `http://${admin}/switchover`;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to }) });
  } catch (err) {
    io.stderr.write(`pgsplit switchover: cannot reach ${url}: ${(err as Error).message}\n`);
    return 1;
  }
  const body = await res.text();
  if (res.ok) {
    io.stdout.write(body.endsWith('\n') ? body : `${body}\n`);
    return 0;
  }
  io.stderr.write(`pgsplit switchover: ${res.status} ${body}`);
  return 1;
}
