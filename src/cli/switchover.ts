// `pgsplit switchover --to NODE`: asks a running pgsplit (its admin port) for a planned switchover and prints the answer.
import { loadConfig } from '../config/load.js';
import { authorizationHeader } from '../admin/auth.js';
import type { CommandIo } from './io.js';


export const SWITCHOVER_USAGE = `usage: pgsplit switchover --to NODE [--config FILE] [--admin HOST:PORT]
  credentials: admin.auth from --config FILE, else PGSPLIT_ADMIN_TOKEN (or PGSPLIT_ADMIN_USER and PGSPLIT_ADMIN_PASSWORD)
  --admin overrides the address the config gives`;

/** Where to reach the admin port a config describes (a wildcard bind address means this host). */
function adminAddress(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::') return `[::1]:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Exit status: 0 done (or --help), 1 refused or failed, 2 usage. */
export async function runSwitchoverCommand(argv: string[], io: CommandIo, env: Record<string, string | undefined> = process.env): Promise<number> {
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
      if (a === '--help' || a === '-h') {
        io.stdout.write(`${SWITCHOVER_USAGE}\n`);
        return 0;
      } else if (a === '--to') to = value();
      else if (a === '--admin') admin = value();
      else if (a === '--config' || a === '-c') config = value();
      else throw new Error(`unknown argument "${a}"`);
    } catch (err) {
      io.stderr.write(`pgsplit switchover: ${(err as Error).message}\n${SWITCHOVER_USAGE}\n`);
      return 2;
    }
  }
  config ??= env.PGSPLIT_CONFIG || undefined;
  if (!to || (!admin && !config)) {
    io.stderr.write(`pgsplit switchover: ${!to ? 'which replica? --to NODE' : 'where is pgsplit? --admin HOST:PORT or --config FILE'}\n${SWITCHOVER_USAGE}\n`);
    return 2;
  }
  let authorization = authorizationHeader({ token: env.PGSPLIT_ADMIN_TOKEN || undefined, user: env.PGSPLIT_ADMIN_USER || undefined, password: env.PGSPLIT_ADMIN_PASSWORD });
  if (config) {
    try {
      const c = loadConfig(config, env);
      admin ??= adminAddress(c.admin.host, c.admin.port);
      authorization = authorizationHeader(c.admin.auth) ?? authorization;
    } catch (err) {
      io.stderr.write(`pgsplit switchover: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const url = `http://${admin}/switchover`;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (authorization) headers.authorization = authorization;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ to }) });
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
  if (res.status === 401) io.stderr.write('pgsplit switchover: give the credentials with --config FILE (admin.auth) or PGSPLIT_ADMIN_TOKEN\n');
  return 1;
}
