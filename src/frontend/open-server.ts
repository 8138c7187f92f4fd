// Opening a server connection to a node for a user: address, password and TLS from the config, counted in the stats.
import { errors } from '../errors.js';
import { connectServer, type NodeConnectSettings, type ServerConnection } from '../backend/connect.js';
import type { Topology } from '../topology/topology.js';
import type { ProxyStats } from './stats.js';

export interface OpenServerContext {
  topology: Topology;
  stats: ProxyStats;
  settings(): { users: ReadonlyMap<string, string>; backendConnectTimeout: number; nodeConnect: ReadonlyMap<string, NodeConnectSettings> };
}

/** A server connection to `nodeName` as `user`, with these startup parameters (user and database included). */
export async function openServer(ctx: OpenServerContext, nodeName: string, user: string, params: ReadonlyMap<string, string>): Promise<{ conn: ServerConnection; host: string; port: number }> {
  const node = ctx.topology.node(nodeName);
  if (!node) throw errors.backendConnect(nodeName, 'the node is no longer in the configuration');
  const s = ctx.settings();
  let conn;
  try {
    conn = await connectServer({
      node: node.name,
      host: node.host,
      port: node.port,
      user,
      password: s.users.get(user) ?? null,
      params,
      connectTimeout: s.backendConnectTimeout,
      ...s.nodeConnect.get(node.name),
    });
  } catch (err) {
    ctx.stats.backendFailed(node.name);
    throw err;
  }
  ctx.stats.backendOpened(node.name);
  // Until a session or pool takes it, the socket has no other error listener.
  conn.socket.on('error', () => {});
  conn.socket.once('close', () => ctx.stats.backendClosed(node.name));
  return { conn, host: node.host, port: node.port };
}
