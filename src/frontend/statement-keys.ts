// Which normalized statement a Query or Parse text is (its fingerprint and shown text), worked out once per routing decision or literal-free text and never per execution.
//
// The classifier hands out one shared, cached Classification per text, and per literal-free shape for plain reads
// and writes (every `… WHERE aid = n` gets the same object): the key is remembered against that object, so a
// statement seen again costs one WeakMap lookup. Only a classification the proxy has not seen yet goes on to the
// literal-free text (an LRU) and, for a shape not seen yet either, to the parser for the fingerprint.
import { createHash } from 'node:crypto';
import type { Classification } from '../router/classification.js';
import { LruCache } from '../router/cache.js';
import { literalFreeKey } from '../router/fingerprint.js';
import { statementFingerprint } from '../router/statement-fingerprint.js';
import { clipText, type StatementKey, type StatementStats } from '../stats/statement-stats.js';

/** Literal-free texts remembered with their key, beyond the classifications the classifier's cache keeps alive. */
const SHAPES = 4096;
/** A longer literal-free text is remembered by its hash: a client may send statements of many megabytes. */
const SHAPE_KEY_CHARS = 2048;

export class StatementKeys {
  private readonly byClassification = new WeakMap<Classification, StatementKey>();
  private readonly byShape = new LruCache<StatementKey>(SHAPES);
  /** Fingerprints computed (one parse each); what the caches above save. */
  fingerprints = 0;

  /** `maxParseLength`: routing.max_parse_length; a longer text is fingerprinted by its literal-free text unparsed. */
  constructor(private readonly maxParseLength: () => number) {}

  /** The statement `sql` is (classified as `cls`); remembered for `of(cls)` (a prepared statement's Executes). */
  forText(cls: Classification, sql: string): StatementKey {
    let key = this.byClassification.get(cls);
    if (key !== undefined) return key;
    const shape = literalFreeKey(sql) ?? sql;
    const shapeKey = shape.length <= SHAPE_KEY_CHARS ? shape : `\u0000${createHash('sha1').update(shape).digest('base64')}`;
    key = this.byShape.get(shapeKey);
    if (key === undefined) {
      this.fingerprints++;
      key = { id: statementFingerprint(sql, shape, this.maxParseLength()), text: clipText(shape.trim()) };
      this.byShape.set(shapeKey, key);
    }
    this.byClassification.set(cls, key);
    return key;
  }

  /** The key given to this classification at its Parse, or null (a statement the proxy saw no Parse for). */
  of(cls: Classification | null): StatementKey | null {
    return cls === null ? null : this.byClassification.get(cls) ?? null;
  }
}

/** What routing sessions need to count statements; null in the session context when stats are off. */
export interface StatementCounting {
  table: StatementStats;
  keys: StatementKeys;
}
