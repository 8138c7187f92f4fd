// Classifier: the statement classifier the session uses — lexical pre-check, LRU cache, parser, function catalog — with counters for metrics.
import { effectFlags, type Classification } from './classification.js';
import { LruCache } from './cache.js';
import { literalFreeKey } from './fingerprint.js';
import { classifyLexical, classifySizeBound, classifyWithParser } from './classify.js';
import { FunctionCatalog } from './functions.js';
import { scanLeading } from './lexical.js';
import { DEFAULT_MAX_PARSE_LENGTH, exceedsLength } from './parser.js';
import { BucketCounts } from '../util/bucket-counts.js';

/** Upper bounds (seconds) of the classification time histogram: a cache hit is ~0.3 µs, a parse ~13 µs. */
export const CLASSIFY_BUCKETS = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2];

/** The routing section of the config, as far as classification is concerned. */
export interface ClassifierRouting {
  read_only_functions: readonly string[];
  write_functions: readonly string[];
  max_parse_length: number;
  parse_cache_size: number;
}

export interface ClassifierOptions {
  catalog?: FunctionCatalog;
  maxParseLength?: number;
  cacheSize?: number;
  /** Milliseconds, monotonic; replaceable in tests. */
  now?: () => number;
  /** Called after every classification, e.g. to feed a histogram of classification time. */
  observe?: (seconds: number, source: ClassificationSource, result: Classification) => void;
}

export type ClassificationSource = 'lexical' | 'cache' | 'parser' | 'size-bound';

export interface ClassifierStats {
  /** Statements answered by the lexical pre-check (never cached: one-off writes would flush useful entries). */
  lexical: number;
  cacheHits: number;
  cacheMisses: number;
  /** Full parses, and how many of them PostgreSQL's grammar rejected. */
  parsed: number;
  parseErrors: number;
  tooLong: number;
  /** Total time spent in classify(), in seconds. */
  seconds: number;
}

// Cached decisions are shared by every session: freeze them so no caller can change another's answer.
/**
 * A decision that no literal in the text can change: plain reads and writes, with no session effect, pin,
 * hint or error. Only these are cached under the literal-free shape of the text.
 */
function literalIndependent(c: Classification): boolean {
  if (c.error !== undefined || c.intercept || c.hint || c.maxLagMs !== undefined || c.hintError) return false;
  for (const s of c.statements) {
    if (s.kind !== 'read' && s.kind !== 'write') return false;
    if (s.setting || s.pin || s.unpin || s.intercept || s.text !== undefined || s.channel !== undefined || s.portalName !== undefined) return false;
  }
  return true;
}

function freeze(c: Classification): Classification {
  c.flags = effectFlags(c);
  for (const s of c.statements) {
    if (s.setting) Object.freeze(s.setting);
    if (s.interceptError) Object.freeze(s.interceptError);
    Object.freeze(s);
  }
  Object.freeze(c.statements);
  return Object.freeze(c);
}

/** One per proxy: decisions are shared by all sessions (they depend only on the text and the catalog). */
export class Classifier {
  private catalogValue: FunctionCatalog;
  private cache: LruCache<Classification>;
  private maxParseLength: number;
  private readonly now: () => number;
  private readonly observe?: ClassifierOptions['observe'];
  private counters = { lexical: 0, parsed: 0, parseErrors: 0, tooLong: 0, seconds: 0 };
  /** Duration of the last classify() call in seconds. */
  lastSeconds = 0;
  /** Classification time by how the answer was reached. */
  readonly timings: Record<ClassificationSource, BucketCounts> = {
    cache: new BucketCounts(CLASSIFY_BUCKETS),
    lexical: new BucketCounts(CLASSIFY_BUCKETS),
    parser: new BucketCounts(CLASSIFY_BUCKETS),
    'size-bound': new BucketCounts(CLASSIFY_BUCKETS),
  };

  constructor(options: ClassifierOptions = {}) {
    this.catalogValue = options.catalog ?? new FunctionCatalog();
    this.cache = new LruCache(options.cacheSize ?? 10_000);
    this.maxParseLength = options.maxParseLength ?? DEFAULT_MAX_PARSE_LENGTH;
    this.now = options.now ?? (() => performance.now());
    this.observe = options.observe;
  }

  static fromConfig(routing: ClassifierRouting, volatile: Iterable<string> = [], options: Omit<ClassifierOptions, 'catalog' | 'maxParseLength' | 'cacheSize'> = {}): Classifier {
    const catalog = new FunctionCatalog({ volatile, readOnly: routing.read_only_functions, write: routing.write_functions });
    return new Classifier({ ...options, catalog, maxParseLength: routing.max_parse_length, cacheSize: routing.parse_cache_size });
  }

  get catalog(): FunctionCatalog {
    return this.catalogValue;
  }

  /** A new catalog (pg_proc refreshed, config reloaded) invalidates every cached decision. */
  setCatalog(catalog: FunctionCatalog): void {
    this.catalogValue = catalog;
    this.cache.clear();
  }

  /**
   * routing.max_parse_length or routing.parse_cache_size reloaded: every cached decision was made under the old
   * bound (a statement parsed as a read may now be over it), so the cache starts empty at its new size.
   */
  setLimits(limits: { maxParseLength: number; cacheSize: number }): void {
    const { hits, misses } = this.cache;
    this.cache = new LruCache(limits.cacheSize);
    // The counters feed cumulative metrics: they carry on across the new cache.
    this.cache.hits = hits;
    this.cache.misses = misses;
    this.maxParseLength = limits.maxParseLength;
  }

  get stats(): ClassifierStats {
    return { ...this.counters, cacheHits: this.cache.hits, cacheMisses: this.cache.misses };
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /** Where a fresh session sends `sql`. The result is frozen and shared: do not modify it. */
  classify(sql: string): Classification {
    const started = this.now();
    let source: ClassificationSource;
    let result: Classification | undefined;
    // The cache first (exact text, then the literal-free shape): most statements are seen again.
    let shapeKey: string | null | undefined;
    result = this.cache.get(sql, false);
    if (result === undefined) {
      const shape = literalFreeKey(sql);
      shapeKey = shape === null ? null : `\u0000${shape}`;
      if (shapeKey !== null) result = this.cache.get(shapeKey, false);
    }
    if (result !== undefined) {
      source = 'cache';
      this.cache.hits++;
    } else {
      const leading = scanLeading(sql);
      if (exceedsLength(sql, this.maxParseLength)) {
        source = 'size-bound';
        this.counters.tooLong++;
        result = classifySizeBound(sql, leading);
        result.flags = effectFlags(result);
      } else {
        const fast = classifyLexical(sql, leading);
        if (fast) {
          source = 'lexical';
          this.counters.lexical++;
          result = fast;
          fast.flags = effectFlags(fast);
          // A DML write's shape decides it alone (literals there are data), so inlined values share one entry.
          // Other keywords are not cached this way: a DO body, for one, is a literal that may LISTEN.
          if (shapeKey && fast.reason === 'write' && literalIndependent(fast)) this.cache.set(shapeKey, freeze(fast));
        } else {
          this.cache.misses++;
          source = 'parser';
          this.counters.parsed++;
          result = freeze(classifyWithParser(sql, this.catalogValue, leading, this.maxParseLength));
          if (result.error !== undefined) this.counters.parseErrors++;
          this.cache.set(shapeKey && literalIndependent(result) ? shapeKey : sql, result);
        }
      }
    }
    const seconds = (this.now() - started) / 1000;
    this.lastSeconds = seconds;
    this.counters.seconds += seconds;
    this.timings[source].observe(seconds);
    this.observe?.(seconds, source, result);
    return result;
  }
}
