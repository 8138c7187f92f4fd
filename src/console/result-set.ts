// Encodes admin console replies as PostgreSQL messages: RowDescription of text columns, DataRow, CommandComplete, NoticeResponse, ErrorResponse.
import { B } from '../protocol/codes.js';
import { MessageWriter } from '../protocol/writer.js';
import { errorResponse } from '../protocol/backend-messages.js';
import type { Cell, ConsoleReply } from './reply.js';

const TEXT_OID = 25;

export function rowDescription(columns: readonly string[]): Buffer {
  return MessageWriter.message(B.RowDescription, (w) => {
    w.int8(columns.length >> 8).int8(columns.length & 0xff);
    for (const name of columns) {
      // No table (0, 0), type text, variable length, no modifier, text format.
      w.cstring(name).int32(0).int8(0).int8(0).int32(TEXT_OID).int8(0xff).int8(0xff).int32(-1).int8(0).int8(0);
    }
  });
}

export function dataRow(cells: readonly Cell[]): Buffer {
  return MessageWriter.message(B.DataRow, (w) => {
    w.int8(cells.length >> 8).int8(cells.length & 0xff);
    for (const c of cells) {
      if (c === null) w.int32(-1);
      else {
        const v = Buffer.from(c);
        w.int32(v.length).bytes(v);
      }
    }
  });
}

export function commandComplete(tag: string): Buffer {
  return MessageWriter.message(B.CommandComplete, (w) => w.cstring(tag));
}

export function notice(message: string): Buffer {
  return MessageWriter.message(B.NoticeResponse, (w) => {
    w.int8(0x53).cstring('NOTICE'); // S
    w.int8(0x56).cstring('NOTICE'); // V
    w.int8(0x43).cstring('00000'); // C
    w.int8(0x4d).cstring(message); // M
    w.int8(0);
  });
}

/** The messages of one reply (no ReadyForQuery: the session sends it after the last command of the Query). */
export function encodeReply(r: ConsoleReply): Buffer[] {
  if (r.kind === 'error') return [errorResponse({ severity: 'ERROR', sqlstate: r.sqlstate, message: r.message, detail: r.detail, hint: r.hint })];
  const out: Buffer[] = [];
  if (r.notice) out.push(notice(r.notice));
  if (r.kind === 'rows') {
    out.push(rowDescription(r.columns));
    for (const row of r.rows) out.push(dataRow(row));
  }
  out.push(commandComplete(r.tag));
  return out;
}
