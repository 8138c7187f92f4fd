// A session's settings made inside a transaction: kept until it commits, bounded when a SET repeats, undone by ROLLBACK TO SAVEPOINT.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ServerLink } from '../../src/backend/server-link.js';
import { SessionState } from '../../src/frontend/session-state.js';
import { Classifier } from '../../src/router/classifier.js';
import { initParser } from '../../src/router/parser.js';

let k: Classifier;
beforeAll(async () => {
  await initParser();
  k = new Classifier();
});

const link = (): ServerLink => ({ settings: '' }) as unknown as ServerLink;
/** The SQL a fresh server connection is sent to take on the session's settings ('' when none). */
const replayText = (st: SessionState): string => {
  const q = st.replayFor(link());
  return q === null ? '' : q.toString('utf8', 5, q.length - 1);
};
const pendingCount = (st: SessionState): number => (st as unknown as { txEntries: unknown[] }).txEntries.length;

describe('settings made in a transaction', () => {
  it('a SET repeated 10,000 times is one pending entry, and its last value holds after COMMIT', () => {
    const st = new SessionState(true);
    const on = link();
    for (let i = 0; i < 10_000; i++) st.applyEffects([k.classify(`SET app.v = '${i % 7}'`)], true, on);
    st.applyEffects([k.classify('SET app.w = 1')], true, on);
    expect(pendingCount(st)).toBe(2);
    st.commitTransaction(on);
    const text = replayText(st);
    expect(text).toContain(`SET app.v = '${9_999 % 7}'`);
    expect(text).toContain('SET app.w = 1');
    expect(text.match(/app\.v/g)).toHaveLength(1);
  });

  it('ROLLBACK TO SAVEPOINT still undoes what was set again after the savepoint', () => {
    const st = new SessionState(true);
    const on = link();
    const run = (sql: string) => st.applyEffects([k.classify(sql)], true, on);
    run("SET app.v = 'before'");
    run('SAVEPOINT s');
    run("SET app.v = 'after-1'");
    run("SET app.v = 'after-2'");
    expect(pendingCount(st)).toBe(2);
    run('ROLLBACK TO SAVEPOINT s');
    st.commitTransaction(on);
    expect(replayText(st)).toBe("SET app.v = 'before'");
  });

  it('a transaction that rolls back leaves no setting', () => {
    const st = new SessionState(true);
    const on = link();
    st.applyEffects([k.classify("SET app.v = 'x'")], true, on);
    st.abortTransaction();
    expect(replayText(st)).toBe('');
  });

  it('counts the settings and the length of their text as they would be once a SET ran (the last value of each name)', () => {
    const st = new SessionState(true);
    const on = link();
    st.applyEffects([k.classify("SET app.a = 'xxxxxxxxxx'")], false, on);
    st.applyEffects([k.classify("SET app.b = 'y'")], true, on);
    const a = "SET app.a = 'xxxxxxxxxx'".length;
    const b = "SET app.b = 'y'".length;
    expect(st.settingsAfter([])).toEqual({ count: 2, bytes: a + b });
    expect(st.settingsAfter([k.classify("SET app.a = 'z'")])).toEqual({ count: 2, bytes: "SET app.a = 'z'".length + b });
    expect(st.settingsAfter([k.classify("SET app.c = 'w'")])).toEqual({ count: 3, bytes: a + b + "SET app.c = 'w'".length });
  });
});
