// Where a session sends its next unit (placeUnit): transactions stay whole, pipelining only on the primary, cut and discarded batches answered by the proxy.
import { beforeAll, describe, expect, it } from 'vitest';
import { Classifier } from '../../src/router/classifier.js';
import { initParser } from '../../src/router/parser.js';
import { placeUnit, type PlacementInput } from '../../src/router/placement.js';

let k: Classifier;
beforeAll(async () => {
  await initParser();
  k = new Classifier();
});

const idle = (sql: string, more: Partial<PlacementInput> = {}): PlacementInput => ({
  forcePrimary: false,
  sticky: false,
  inFlight: null,
  discarding: false,
  cut: false,
  inTransaction: false,
  parts: [k.classify(sql)],
  split: false,
  pinned: false,
  hint: 'auto',
  ...more,
});

describe('placeUnit', () => {
  it('sends a plain read to a replica and a write to the primary, with the classifier’s reason', () => {
    expect(placeUnit(idle('SELECT 1'))).toEqual({ to: 'replica', reason: expect.any(String) });
    expect(placeUnit(idle('INSERT INTO t VALUES (1)'))).toMatchObject({ to: 'primary' });
  });

  it('keeps every statement of an open transaction on the server that holds it', () => {
    expect(placeUnit(idle('SELECT 1', { sticky: true }))).toEqual({ to: 'sticky', reason: 'transaction' });
    // A transaction open without a sticky server (its link was just lost, a new one is being found): the primary.
    expect(placeUnit(idle('SELECT 1', { inTransaction: true }))).toEqual({ to: 'primary', reason: 'transaction' });
  });

  it('pipelines behind a unit running on the primary, but lets a replica unit run alone', () => {
    expect(placeUnit(idle('SELECT 1', { inFlight: { onPrimary: true, opensTransaction: false } }))).toEqual({ to: 'behind', reason: 'pipelined' });
    expect(placeUnit(idle('SELECT 1', { inFlight: { onPrimary: false, opensTransaction: false } }))).toEqual({ to: 'wait' });
    // BEGIN READ ONLY went to a replica: what follows belongs to that transaction, on that replica.
    expect(placeUnit(idle('SELECT 1', { inFlight: { onPrimary: false, opensTransaction: true } }))).toEqual({ to: 'behind', reason: 'transaction' });
  });

  it('runs a retry on the primary once nothing is in flight, and not before', () => {
    expect(placeUnit(idle('SELECT 1', { forcePrimary: true }))).toEqual({ to: 'primary', reason: 'retry' });
    expect(placeUnit(idle('SELECT 1', { forcePrimary: true, inFlight: { onPrimary: false, opensTransaction: false } }))).toEqual({ to: 'wait' });
  });

  it('answers without a server the rest of a failed batch, then a cut transaction', () => {
    expect(placeUnit(idle('INSERT INTO t VALUES (1)', { discarding: true, cut: true }))).toEqual({ to: 'discard' });
    expect(placeUnit(idle('COMMIT', { cut: true, inTransaction: true }))).toEqual({ to: 'cut' });
  });

  it('keeps a pinned session, a primary hint and a split batch piece on the primary', () => {
    expect(placeUnit(idle('SELECT 1', { pinned: true }))).toEqual({ to: 'primary', reason: 'pinned' });
    expect(placeUnit(idle('SELECT 1', { hint: 'primary' }))).toEqual({ to: 'primary', reason: 'route-hint' });
    expect(placeUnit(idle('SELECT 1', { split: true }))).toMatchObject({ to: 'primary' });
  });
});
