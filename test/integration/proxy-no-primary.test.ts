// A proxy whose nodes are all replicas: new connections wait failover.hold_timeout for a primary, then are refused with 57P03 saying none is available.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { adminGet, proxyClient, psql, rejection } from './helpers.js';

const info = inject('cluster');

let proxy: RunningProxy;

describe('no primary in the cluster', () => {
  beforeAll(async () => {
    proxy = await startProxy({ ...info, nodes: info.nodes.slice(1) }, { extra: 'failover: { hold_timeout: 300ms }' });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
  });

  it('refuses a node-postgres connection with 57P03 and says no primary is available', async () => {
    const err = await rejection(proxyClient(proxy, info, { connectionTimeoutMillis: 10_000 }));
    expect(err.message).not.toMatch(/timeout/i);
    expect(err.code).toBe('57P03');
    expect(err.message).toMatch(/no primary/i);
  });

  it('waits for a primary up to failover.hold_timeout before refusing', async () => {
    const started = Date.now();
    const err = await rejection(proxyClient(proxy, info, { connectionTimeoutMillis: 10_000 }));
    expect(err.code).toBe('57P03');
    // It waited rather than failing at once (the bound is the configured 300ms; no upper timing is asserted).
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('keeps refusing cleanly, many clients at once', async () => {
    const errs = await Promise.all(Array.from({ length: 10 }, () => rejection(proxyClient(proxy, info, { connectionTimeoutMillis: 10_000 }))));
    for (const e of errs) expect(e.code).toBe('57P03');
  });

  it('gives psql a readable reason, promptly', async () => {
    const r = await psql(proxy, info, ['-c', 'SELECT 1'], { timeoutMs: 15_000 });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(124);
    expect(r.stderr).toMatch(/no primary/i);
  });

  it('reports not ready on the admin port, and no primary in /status', async () => {
    const ready = await adminGet(proxy, '/ready');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/no primary/i);
    const status = JSON.parse((await adminGet(proxy, '/status')).body) as { primary: string | null; nodes: { name: string; role: string }[] };
    expect(status.primary).toBeNull();
    expect(status.nodes.map((n) => n.name).sort()).toEqual(['pg2', 'pg3']);
    expect((await adminGet(proxy, '/health')).status).toBe(200);
  });
});
