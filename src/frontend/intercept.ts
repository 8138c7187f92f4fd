// SET/RESET/SHOW pgsplit.*: the proxy's own per-session settings, applied and answered without a server.
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js';
import { F } from '../protocol/codes.js';
import type { Classification } from '../router/classification.js';
import type { RouteHint } from '../router/route.js';
import { localReply } from '../protocol/local-replies.js';

/** What those statements read and change (the Session implements it). */
export interface PgsplitSettings {
  /** The session's ReadyForQuery status: the proxy's answers leave the transaction as it is. */
  readonly txStatus: number;
  /** pgsplit.route */
  hint: RouteHint;
  /** pgsplit.max_lag in ms; null: the configured threshold. */
  maxLagMs: number | null;
  /** SET/RESET pgsplit.read_tags; null: back to the user's or the configured tags. */
  setReadTags(tags: readonly string[] | null): void;
  /** The tags the session's reads use now. */
  readTagsInEffect(): readonly string[];
}

/** SET/RESET/SHOW pgsplit.* in a Query (or one Execute of a batch): apply and answer locally. */
export function intercept(cls: Classification, simple: boolean, session: PgsplitSettings): Buffer {
  const out: Buffer[] = [];
  for (const s of cls.statements) {
    if (s.interceptError) {
      out.push(errorResponse({ sqlstate: s.interceptError.sqlstate, message: s.interceptError.message, severity: 'ERROR' }));
      break;
    }
    if (s.routeHint) session.hint = s.routeHint;
    if (s.maxLagMs !== undefined) session.maxLagMs = s.maxLagMs;
    if (s.readTags !== undefined) session.setReadTags(s.readTags);
    if (s.show) out.push(...localReply.show(s.show, showSetting(s.show, session), simple));
    else out.push(localReply.commandComplete(s.kind === 'reset' ? 'RESET' : 'SET'));
  }
  if (simple) out.push(readyForQuery(statusOf(session)));
  return Buffer.concat(out);
}

/** An extended batch made only of pgsplit.* statements: answer each message as PostgreSQL would. */
export function interceptBatch(frames: readonly Buffer[], parts: readonly Classification[], session: PgsplitSettings): Buffer {
  const out: Buffer[] = [];
  let part = 0;
  for (const f of frames) {
    const t = f[0];
    if (t === F.Parse) out.push(localReply.parseComplete());
    else if (t === F.Bind) out.push(localReply.bindComplete());
    else if (t === F.Describe) {
      const show = parts[Math.min(part, parts.length - 1)]?.statements.find((st) => st.show)?.show;
      out.push(show ? localReply.showRowDescription(show) : localReply.noData());
    }
    else if (t === F.Execute) out.push(intercept(parts[Math.min(part++, parts.length - 1)], false, session));
    else if (t === F.Close) out.push(localReply.closeComplete());
    else if (t === F.Sync) out.push(readyForQuery(statusOf(session)));
  }
  return Buffer.concat(out);
}

function showSetting(name: string, session: PgsplitSettings): string {
  if (name === 'pgsplit.route') return session.hint;
  if (name === 'pgsplit.max_lag') return session.maxLagMs === null ? 'default' : `${session.maxLagMs}ms`;
  return session.readTagsInEffect().join(',');
}

function statusOf(session: PgsplitSettings): 'I' | 'T' | 'E' {
  return session.txStatus === 0x54 ? 'T' : session.txStatus === 0x45 ? 'E' : 'I';
}
