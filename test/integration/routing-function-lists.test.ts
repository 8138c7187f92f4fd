// Routing on the real cluster: routing.write_functions sends calls of a listed (non-VOLATILE) user function to the primary; unlisted STABLE functions stay reads.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { attachCluster } from '../harness/cluster.js';
import { startProxy, type RunningProxy } from '../harness/proxy.js';
import { directClient, eventually, proxyClient, using } from './helpers.js';

const info = inject('cluster');
const cluster = attachCluster(info);
const primary = cluster.nodes[0]!;
const replicaPorts = cluster.nodes.slice(1).map((n) => n.port);
const listed = `routing_fl_listed_${process.pid}`;
const plain = `routing_fl_plain_${process.pid}`;

let proxy: RunningProxy;

const appOn = (i: number) => directClient(cluster.nodes[i]!, info, { user: info.app.user, password: info.app.password, database: info.app.database });
const withClient = <T>(fn: (c: pg.Client) => Promise<T>) => using(proxyClient(proxy, info), fn);

describe('routing.write_functions', () => {
  beforeAll(async () => {
    await using(appOn(0), async (c) => {
      for (const f of [listed, plain]) {
        await c.query(`CREATE OR REPLACE FUNCTION ${f}() RETURNS int LANGUAGE sql STABLE AS $$ SELECT inet_server_port() $$`);
      }
    });
    for (let i = 1; i < cluster.nodes.length; i++) {
      await using(appOn(i), (c) =>
        eventually(`${cluster.nodes[i]!.name} to replay the functions`, async () =>
          (await c.query(`SELECT to_regproc('${listed}') IS NOT NULL AND to_regproc('${plain}') IS NOT NULL AS ok`)).rows[0].ok ? true : undefined,
        ),
      );
    }
    proxy = await startProxy(info, { extra: `routing: { enabled: true, write_functions: [${listed}] }` });
  });

  afterAll(async () => {
    await proxy?.close(1_000);
    await using(appOn(0), async (c) => {
      for (const f of [listed, plain]) await c.query(`DROP FUNCTION IF EXISTS ${f}()`);
    }).catch(() => {});
  });

  it('sends a call of a listed function to the primary', async () => {
    await withClient(async (c) => {
      expect((await c.query(`SELECT ${listed}() AS port`)).rows[0].port).toBe(primary.port);
      expect((await c.query({ text: `SELECT public.${listed}() AS port, $1::int AS n`, values: [1] })).rows[0].port).toBe(primary.port);
    });
  });

  it('keeps a call of an unlisted STABLE function on a replica', async () => {
    await withClient(async (c) => {
      expect(replicaPorts).toContain((await c.query(`SELECT ${plain}() AS port`)).rows[0].port);
    });
  });
});
