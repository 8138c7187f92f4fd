// Unit tests for pgsplit's own startup options (takePgsplitOptions: pgsplit.route, pgsplit.read_tags) and tag lists (parseTagList).
import { describe, expect, it } from 'vitest';
import { takePgsplitOptions } from '../../src/frontend/client-startup.js';
import { parseTagList } from '../../src/router/variable-set.js';

/** Startup parameters as a client sends them, with `options` when given. */
function params(options?: string): Map<string, string> {
  const m = new Map([
    ['user', 'app'],
    ['database', 'shop'],
  ]);
  if (options !== undefined) m.set('options', options);
  return m;
}

describe('takePgsplitOptions', () => {
  it('takes out pgsplit.route and pgsplit.read_tags and forwards the rest', () => {
    const p = params('-c pgsplit.route=primary -c pgsplit.read_tags=a,b -c work_mem=4MB');
    expect(takePgsplitOptions(p)).toEqual({ hint: 'primary', readTags: ['a', 'b'], maxLagMs: null });
    expect(p.get('options')).toBe('-c work_mem=4MB');
    expect(p.get('user')).toBe('app');
    expect(p.get('database')).toBe('shop');
  });

  it('keeps the order and spacing of what it forwards', () => {
    const p = params('-c work_mem=4MB -c pgsplit.route=replica -c search_path=app');
    expect(takePgsplitOptions(p).hint).toBe('replica');
    expect(p.get('options')).toBe('-c work_mem=4MB -c search_path=app');
  });

  it('deletes the options key when only pgsplit options were given', () => {
    const p = params('-c pgsplit.route=primary -c pgsplit.read_tags=analytics');
    expect(takePgsplitOptions(p)).toEqual({ hint: 'primary', readTags: ['analytics'], maxLagMs: null });
    expect(p.has('options')).toBe(false);
  });

  it('without options: auto and no tags, parameters untouched', () => {
    const p = params();
    expect(takePgsplitOptions(p)).toEqual({ hint: 'auto', readTags: null, maxLagMs: null });
    expect([...p]).toEqual([...params()]);
    const q = params('-c work_mem=4MB');
    expect(takePgsplitOptions(q)).toEqual({ hint: 'auto', readTags: null, maxLagMs: null });
    expect(q.get('options')).toBe('-c work_mem=4MB');
  });

  it.each<[string, 'primary' | 'replica' | 'auto']>([
    ['-c pgsplit.route=replica', 'replica'],
    ['-c pgsplit.route=auto', 'auto'],
    ['--pgsplit.route=primary', 'primary'],
    ['-cpgsplit.route=primary', 'primary'],
    ['-c PGSPLIT.ROUTE=Primary', 'primary'],
    ['-c pgsplit.route=primary -c pgsplit.route=replica', 'replica'],
  ])('%s → %s', (options, hint) => {
    const p = params(options);
    expect(takePgsplitOptions(p).hint).toBe(hint);
    expect(p.has('options')).toBe(false);
  });

  it('ignores an invalid route value, and still does not forward it', () => {
    const p = params('-c pgsplit.route=sideways -c work_mem=4MB');
    expect(takePgsplitOptions(p)).toEqual({ hint: 'auto', readTags: null, maxLagMs: null });
    expect(p.get('options')).toBe('-c work_mem=4MB');
  });

  it('an empty read_tags asks for no tags (ordinary replicas), unlike no read_tags at all', () => {
    expect(takePgsplitOptions(params('-c pgsplit.read_tags='))).toEqual({ hint: 'auto', readTags: [], maxLagMs: null });
    expect(takePgsplitOptions(params('--pgsplit.read_tags=eu-west.1,x_y'))).toEqual({ hint: 'auto', readTags: ['eu-west.1', 'x_y'], maxLagMs: null });
  });

  // An option is one space-separated word of `options`: a value with characters pgsplit does not accept
  // must be ignored as a whole (as an invalid route value is), not cut short with the rest sent to PostgreSQL,
  // which then refuses the connection over the leftover ("invalid command-line argument for server process").
  it.each<[string, { hint: 'auto'; readTags: null; maxLagMs: null }]>([
    ['-c pgsplit.read_tags=a,b!c', { hint: 'auto', readTags: null, maxLagMs: null }],
    ['-c pgsplit.route=replica!', { hint: 'auto', readTags: null, maxLagMs: null }],
  ])('ignores the whole of a malformed value: %s', (options, want) => {
    const p = params(options);
    expect(takePgsplitOptions(p)).toEqual(want);
    expect(p.get('options')).toBeUndefined();
  });
});

describe('parseTagList', () => {
  it.each<[string, string[] | undefined]>([
    ['a', ['a']],
    ['a,b', ['a', 'b']],
    ['a, b', ['a', 'b']],
    ['  analytics  ', ['analytics']],
    ['a,,b,', ['a', 'b']],
    ['eu-west.1,x_y,Z9', ['eu-west.1', 'x_y', 'Z9']],
    ['', []],
    [' , ', []],
    ['a b', undefined],
    ['a;b', undefined],
    ['ok,"quoted"', undefined],
    ['ok,x/y', undefined],
  ])('%j → %j', (value, want) => {
    expect(parseTagList(value)).toEqual(want);
  });
});

describe('takePgsplitOptions: pgsplit.max_lag', () => {
  it('takes a duration for the session and does not forward it', () => {
    const p = params('-c pgsplit.max_lag=500ms -c work_mem=4MB');
    expect(takePgsplitOptions(p)).toEqual({ hint: 'auto', readTags: null, maxLagMs: 500 });
    expect(p.get('options')).toBe('-c work_mem=4MB');
  });

  it('drops a value that is not a duration', () => {
    const p = params('-c pgsplit.max_lag=soon');
    expect(takePgsplitOptions(p)).toEqual({ hint: 'auto', readTags: null, maxLagMs: null });
    expect(p.has('options')).toBe(false);
  });
});
