// `npx tsx scripts/stats-cost.ts`: the CPU statement statistics add per unit, in process (no cluster): -S units through the classifier and a server connection's answer scan, with stats off and on, alternating.
import { EventEmitter } from 'node:events';
import { initParser } from '../src/router/parser.js';
import { Classifier } from '../src/router/classifier.js';
import { StatementKeys } from '../src/frontend/statement-keys.js';
import { StatementStats } from '../src/stats/statement-stats.js';
import { StatementRun } from '../src/stats/statement-run.js';
import { ServerLink, type LinkOwner } from '../src/backend/server-link.js';
import type { ServerConnection } from '../src/backend/connect.js';

const UNITS = Number(process.env.STATS_COST_UNITS ?? 1_000_000);

function frame(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

// What PostgreSQL answers pgbench -S: RowDescription, one DataRow, CommandComplete, ReadyForQuery.
const ANSWER = Buffer.concat([
  frame('T', Buffer.from([0, 1, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x17, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0])),
  frame('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x31])),
  frame('C', Buffer.from('SELECT 1\0')),
  frame('Z', Buffer.from('I')),
]);

function makeLink(): ServerLink {
  const owner: LinkOwner = { linkClosed() {}, linkFailed(_l, err) { throw err; }, linkDrained() {}, linkError() {}, forward() {}, ready() {}, messages() {} };
  const socket = Object.assign(new EventEmitter(), { write: () => true, pause() {}, resume() {}, destroyed: false });
  const conn = { node: 'pg2', socket, tls: false, slot: { handler: null }, pid: 1, secret: 2, parameters: new Map(), startupFrames: [] } as unknown as ServerConnection;
  return new ServerLink(conn, '127.0.0.1', 5432, owner);
}

await initParser();
const classifier = new Classifier();
const keys = new StatementKeys(() => 64 * 1024);
const table = new StatementStats(1000);
// One connection each: a connection that counted once keeps scanning for CommandComplete.
const plain = makeLink();
const counting = makeLink();
const texts = Array.from({ length: 1000 }, (_, i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${(i * 7919) % 100_000};`);

function unit(i: number, on: boolean): void {
  const sql = texts[i % texts.length]!;
  const cls = classifier.classify(sql);
  const link = on ? counting : plain;
  link.owed = 1;
  if (on) link.track(new StatementRun(table, [keys.forText(cls, sql)], true, true, false, 'replica', 'select', performance.now()));
  link.data(ANSWER);
}

const ns: Record<string, number[]> = { off: [], on: [] };
for (let round = 0; round < 6; round++) {
  const on = round % 2 === 1;
  for (let i = 0; i < UNITS / 10; i++) unit(i, on);
  const t0 = process.cpuUsage();
  for (let i = 0; i < UNITS; i++) unit(i, on);
  const d = process.cpuUsage(t0);
  ns[on ? 'on' : 'off']!.push(((d.user + d.system) * 1000) / UNITS);
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`CPU per -S unit (classify + answer scan), ${UNITS} units a round, 3 rounds each: stats off ${ns.off!.map((x) => x.toFixed(0)).join(', ')} ns; on ${ns.on!.map((x) => x.toFixed(0)).join(', ')} ns; added ${(med(ns.on!) - med(ns.off!)).toFixed(0)} ns (medians)`);
