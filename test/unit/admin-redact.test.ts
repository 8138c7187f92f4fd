// What /status may show: redact() masks passwords, tokens, failover commands and conninfo passwords; admin credential checks.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { maskConninfo, redact } from '../../src/config/redact.js';
import { authorizationHeader, challenges, checkCredentials } from '../../src/admin/auth.js';

const YAML = `
admin: { auth: { token: "\${TOKEN}", user: ops, password: "\${ADMIN_PW}" } }
users: [ { name: app, password: s3cret }, { name: reporting, password: r3port } ]
nodes: [ { name: pg1, host: db1 } ]
monitor: { password: m0nitor }
failover:
  hook_command: "curl -H 'X-Key: \${HOOK_KEY}' https://hooks.example/failover"
  rejoin_command: ""
  demote_command: "PGPASSWORD=\${DEMOTE_PW} demote.sh"
`;
const ENV = { TOKEN: 'tok-123456', ADMIN_PW: 'adm1n-pw', HOOK_KEY: 'hook-k3y-xyz', DEMOTE_PW: 'dem0te-pw' };
const SECRETS = ['s3cret', 'r3port', 'm0nitor', ...Object.values(ENV)];

describe('redact', () => {
  const c = parseConfig(YAML, ENV);

  it('masks every secret of a config, at any depth, and keeps the rest', () => {
    const r = redact(c, { showUsers: true }) as Record<string, any>;
    const text = JSON.stringify(r);
    for (const s of SECRETS) expect(text, s).not.toContain(s);
    expect(r.admin.auth).toEqual({ token: '***', user: 'ops', password: '***', protect_reads: false });
    expect(r.monitor.password).toBe('***');
    expect(r.failover).toMatchObject({ hook_command: '***', rejoin_command: '', demote_command: '***' });
    expect(r.users).toEqual([{ name: 'app', password: '***' }, { name: 'reporting', password: '***' }]);
    expect(r.nodes).toEqual(JSON.parse(JSON.stringify(c.nodes)));
    // The input is untouched.
    expect(c.failover.hook_command).toContain(ENV.HOOK_KEY);
  });

  it('drops the user list unless asked for it', () => {
    const r = redact({ config: c, primary: 'pg1' }, { showUsers: false }) as Record<string, any>;
    expect(r.config.users).toBeUndefined();
    expect(JSON.stringify(r)).not.toMatch(/reporting/);
    expect(r.primary).toBe('pg1');
  });

  it('masks passwords inside conninfo strings and URIs wherever they appear', () => {
    const status = {
      events: [{ error: "could not set primary_conninfo = 'host=db2 port=5432 user=repl password=Repl-Pw1 application_name=pg3'" }],
      note: 'streams from postgres://repl:Repl-Pw2@db2:5432/postgres?sslmode=require',
    };
    const text = JSON.stringify(redact(status, { showUsers: false }));
    expect(text).not.toMatch(/Repl-Pw/);
    expect(text).toContain('user=repl password=*** application_name=pg3');
    expect(text).toContain('postgres://repl:***@db2:5432');
  });

  it('maskConninfo handles quoted values, spaces around "=", any case, and leaves text without passwords alone', () => {
    expect(maskConninfo("host=a password='x y\\' z' port=1")).toBe('host=a password=*** port=1');
    expect(maskConninfo('host=a PASSWORD = hunter2 port=1')).toBe('host=a PASSWORD = *** port=1');
    expect(maskConninfo('password=')).toBe('password=***');
    expect(maskConninfo('host=a port=5432 user=u')).toBe('host=a port=5432 user=u');
    expect(maskConninfo('see http://example.com/x')).toBe('see http://example.com/x');
  });
});

describe('admin credentials', () => {
  const token = { token: 'tok-123', protect_reads: false };
  const basic = { user: 'ops', password: 'p:w', protect_reads: false };
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('accepts the right bearer token or basic credentials and nothing else', () => {
    expect(checkCredentials('Bearer tok-123', token)).toBe('ok');
    expect(checkCredentials('bearer   tok-123 ', token)).toBe('ok');
    expect(checkCredentials('Bearer tok-1234', token)).toBe('denied');
    expect(checkCredentials('Bearer tok-12', token)).toBe('denied');
    expect(checkCredentials(undefined, token)).toBe('denied');
    expect(checkCredentials(`Basic ${b64('ops:tok-123')}`, token)).toBe('denied');
    expect(checkCredentials(`Basic ${b64('ops:p:w')}`, basic)).toBe('ok');
    expect(checkCredentials(`Basic ${b64('ops:p')}`, basic)).toBe('denied');
    expect(checkCredentials(`Basic ${b64('opz:p:w')}`, basic)).toBe('denied');
    expect(checkCredentials(`Basic ${b64('ops')}`, basic)).toBe('denied');
    expect(checkCredentials('Bearer p:w', basic)).toBe('denied');
  });

  it('reports unconfigured auth (then mutating endpoints are refused outright)', () => {
    expect(checkCredentials('Bearer anything', { protect_reads: false })).toBe('unconfigured');
  });

  it('builds the header a client sends, and one challenge per configured scheme', () => {
    expect(checkCredentials(authorizationHeader(basic), basic)).toBe('ok');
    expect(checkCredentials(authorizationHeader(token), token)).toBe('ok');
    expect(authorizationHeader({})).toBeUndefined();
    expect(challenges({ ...token, ...basic })).toEqual(['Bearer realm="pgsplit admin"', 'Basic realm="pgsplit admin", charset="UTF-8"']);
  });
});
