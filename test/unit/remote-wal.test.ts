// Unit tests for RemoteWalPositions (src/workers/remote-wal.ts): a worker's read-your-writes tickets, answers, resends and replica wants, with a fake IPC send and a fake clock.
import { describe, it, expect } from 'vitest';
import { Topology } from '../../src/topology/topology.js';
import { RemoteWalPositions } from '../../src/workers/remote-wal.js';
import type { FromWorker } from '../../src/workers/messages.js';

const turn = () => new Promise<void>((r) => setImmediate(r));

function setup() {
  const topology = new Topology([
    { name: 'pg1', host: 'db1', port: 5432 },
    { name: 'pg2', host: 'db2', port: 5432 },
    { name: 'pg3', host: 'db3', port: 5432 },
    { name: 'pg4', host: 'db4', port: 5432 },
  ]);
  topology.update('pg1', { role: 'primary', up: true });
  topology.setPrimary('pg1');
  const sent: FromWorker[] = [];
  const clock = { t: 1_000_000 };
  const wal = new RemoteWalPositions(topology, (m) => sent.push(m), () => clock.t);
  return { topology, sent, clock, wal };
}

describe('RemoteWalPositions.ticket', () => {
  it('numbers tickets 1, 2, 3 …', () => {
    const { wal } = setup();
    expect([wal.ticket(), wal.ticket(), wal.ticket()]).toEqual([1, 2, 3]);
  });

  it('sends nothing synchronously, then ONE ticket message with the latest number per event-loop turn', async () => {
    const { wal, sent } = setup();
    wal.ticket();
    wal.ticket();
    wal.ticket();
    expect(sent).toEqual([]);
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k: 3 }]);
    wal.ticket();
    wal.ticket();
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k: 3 }, { t: 'ticket', k: 5 }]);
    // a turn without tickets sends nothing
    await turn();
    expect(sent).toHaveLength(2);
  });
});

describe('RemoteWalPositions.lsnFor and answered', () => {
  it('is null until an answer covers the ticket, then the lsn of the first answer that does', async () => {
    const { wal } = setup();
    for (let i = 0; i < 10; i++) wal.ticket();
    await turn();
    expect(wal.lsnFor(1)).toBeNull();
    wal.answered(2, 100);
    expect(wal.lsnFor(1)).toBe(100);
    expect(wal.lsnFor(2)).toBe(100);
    expect(wal.lsnFor(3)).toBeNull();
    wal.answered(5, 200);
    wal.answered(9, 300);
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => wal.lsnFor(k))).toEqual([100, 100, 200, 200, 200, 300, 300, 300, 300]);
    expect(wal.lsnFor(10)).toBeNull();
  });

  it('ignores an answer that covers no more than the last one', () => {
    const { wal } = setup();
    for (let i = 0; i < 6; i++) wal.ticket();
    wal.answered(5, 200);
    wal.answered(4, 999);
    wal.answered(5, 999);
    expect(wal.lsnFor(4)).toBe(200);
    expect(wal.lsnFor(5)).toBe(200);
    wal.answered(6, 300);
    expect(wal.lsnFor(6)).toBe(300);
    expect(wal.lsnFor(5)).toBe(200);
  });

  it('a ticket older than every kept answer gets the oldest kept one (a later LSN)', () => {
    const { wal } = setup();
    for (let i = 1; i <= 1100; i++) wal.answered(i, i * 10);
    // 1024 answers are kept: upTo 77 … 1100
    expect(wal.lsnFor(1)).toBe(770);
    expect(wal.lsnFor(77)).toBe(770);
    expect(wal.lsnFor(78)).toBe(780);
    expect(wal.lsnFor(1100)).toBe(11000);
  });

  it("a topology 'primary' change clears the answers; other changes do not", async () => {
    const { wal, topology } = setup();
    wal.ticket();
    wal.ticket();
    await turn();
    wal.answered(2, 100);
    topology.update('pg2', { up: true, role: 'replica' });
    topology.setFenced([]);
    expect(wal.lsnFor(2)).toBe(100);
    topology.setPrimary('pg2');
    expect(wal.lsnFor(1)).toBeNull();
    expect(wal.lsnFor(2)).toBeNull();
    // answers for the new primary are taken again
    wal.answered(2, 5000);
    expect(wal.lsnFor(1)).toBe(5000);
  });

  it("a primary change that arrives through follow() clears the answers too", async () => {
    const { wal, topology } = setup();
    wal.ticket();
    await turn();
    wal.answered(1, 100);
    const leader = new Topology(topology.all());
    leader.update('pg1', { role: 'primary', up: true });
    leader.setPrimary('pg1');
    topology.follow(JSON.parse(JSON.stringify(leader.snapshot())));
    expect(wal.lsnFor(1)).toBe(100);
    leader.setPrimary('pg3');
    topology.follow(JSON.parse(JSON.stringify(leader.snapshot())));
    expect(wal.lsnFor(1)).toBeNull();
  });
});

describe('RemoteWalPositions resend', () => {
  it('an unanswered ticket is sent again once the last send is older than 250 ms', async () => {
    const { wal, sent, clock } = setup();
    const k = wal.ticket();
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k }]);
    // still fresh: no resend
    clock.t += 200;
    expect(wal.lsnFor(k)).toBeNull();
    await turn();
    expect(sent).toHaveLength(1);
    // stale: sent again, once for several lookups in one turn
    clock.t += 100;
    expect(wal.lsnFor(k)).toBeNull();
    expect(wal.lsnFor(k)).toBeNull();
    expect(sent).toHaveLength(1);
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k }, { t: 'ticket', k }]);
    // the resend restarts the 250 ms
    clock.t += 100;
    wal.lsnFor(k);
    await turn();
    expect(sent).toHaveLength(2);
    clock.t += 200;
    wal.lsnFor(k);
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k }, { t: 'ticket', k }, { t: 'ticket', k }]);
  });

  it('the resend carries the latest ticket number', async () => {
    const { wal, sent, clock } = setup();
    wal.ticket();
    await turn();
    wal.answered(1, 100);
    wal.ticket();
    wal.ticket();
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k: 1 }, { t: 'ticket', k: 3 }]);
    clock.t += 1000;
    expect(wal.lsnFor(2)).toBeNull();
    await turn();
    expect(sent[2]).toEqual({ t: 'ticket', k: 3 });
  });

  it('an answered ticket is never sent again, however old', async () => {
    const { wal, sent, clock } = setup();
    const k = wal.ticket();
    await turn();
    wal.answered(k, 100);
    clock.t += 60_000;
    expect(wal.lsnFor(k)).toBe(100);
    await turn();
    expect(sent).toHaveLength(1);
  });

  it('after a primary change clears the answers, a stale ticket is asked again', async () => {
    const { wal, sent, clock, topology } = setup();
    const k = wal.ticket();
    await turn();
    wal.answered(k, 100);
    topology.setPrimary('pg2');
    clock.t += 300;
    expect(wal.lsnFor(k)).toBeNull();
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k }, { t: 'ticket', k }]);
  });
});

describe('RemoteWalPositions.replayLsn', () => {
  it('is the larger of the topology and what replayedTo reported', () => {
    const { wal, topology } = setup();
    expect(wal.replayLsn('pg2')).toBeNull();
    topology.update('pg2', { replayLsnValue: 100 });
    expect(wal.replayLsn('pg2')).toBe(100);
    wal.replayedTo('pg2', 50);
    expect(wal.replayLsn('pg2')).toBe(100);
    wal.replayedTo('pg2', 150);
    expect(wal.replayLsn('pg2')).toBe(150);
    // replayedTo never goes back
    wal.replayedTo('pg2', 120);
    expect(wal.replayLsn('pg2')).toBe(150);
    topology.update('pg2', { replayLsnValue: 200 });
    expect(wal.replayLsn('pg2')).toBe(200);
  });

  it('uses replayedTo alone when the topology knows nothing, and is per node', () => {
    const { wal } = setup();
    wal.replayedTo('pg3', 70);
    expect(wal.replayLsn('pg3')).toBe(70);
    expect(wal.replayLsn('pg2')).toBeNull();
    wal.replayedTo('elsewhere', 5);
    expect(wal.replayLsn('elsewhere')).toBe(5);
  });
});

describe('RemoteWalPositions.want', () => {
  it('sends one want with the nodes whose replay LSN is below lsn', async () => {
    const { wal, topology, sent } = setup();
    const nodes = () => topology.all();
    topology.update('pg2', { replayLsnValue: 100 });
    wal.replayedTo('pg4', 500);
    wal.want(300, nodes().slice(1));
    expect(sent).toEqual([]);
    await turn();
    expect(sent).toEqual([{ t: 'want', lsn: 300, nodes: ['pg2', 'pg3'] }]);
  });

  it('sends nothing when every node has replayed lsn already', async () => {
    const { wal, topology, sent } = setup();
    topology.update('pg2', { replayLsnValue: 300 });
    wal.replayedTo('pg3', 400);
    wal.want(300, [topology.node('pg2')!, topology.node('pg3')!]);
    await turn();
    expect(sent).toEqual([]);
  });

  it('several wants in one turn make one message: the largest lsn, every node that was behind', async () => {
    const { wal, topology, sent } = setup();
    topology.update('pg2', { replayLsnValue: 250 });
    wal.want(200, [topology.node('pg3')!]);
    wal.want(300, [topology.node('pg2')!]);
    wal.want(100, [topology.node('pg3')!, topology.node('pg4')!]);
    await turn();
    expect(sent).toHaveLength(1);
    const m = sent[0] as Extract<FromWorker, { t: 'want' }>;
    expect(m.t).toBe('want');
    expect(m.lsn).toBe(300);
    expect([...m.nodes].sort()).toEqual(['pg2', 'pg3', 'pg4']);
    // nothing left over for the next turn
    await turn();
    expect(sent).toHaveLength(1);
  });

  it('a ticket and a want in the same turn go as one message each', async () => {
    const { wal, topology, sent } = setup();
    wal.ticket();
    wal.want(10, [topology.node('pg2')!]);
    wal.ticket();
    await turn();
    expect(sent).toEqual([{ t: 'ticket', k: 2 }, { t: 'want', lsn: 10, nodes: ['pg2'] }]);
  });
});
