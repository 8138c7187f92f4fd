// Backend messages for statements the proxy answers itself (DEALLOCATE, SHOW pgsplit.*, Parse of a known statement, a failed transaction's replies).
import { MessageWriter } from './writer.js';
import { B } from './codes.js';

const empty = (type: number) => MessageWriter.message(type, () => {});

export const localReply = {
  commandComplete: (tag: string) => MessageWriter.message(B.CommandComplete, (w) => w.cstring(tag)),
  parseComplete: () => empty(B.ParseComplete),
  bindComplete: () => empty(B.BindComplete),
  closeComplete: () => empty(B.CloseComplete),
  noData: () => empty(B.NoData),
  /** RowDescription of SHOW name: one text column named like PostgreSQL names it. */
  showRowDescription(name: string): Buffer {
    return MessageWriter.message(B.RowDescription, (w) => {
      w.int8(0).int8(1); // int16 field count = 1
      w.cstring(name).int32(0).int8(0).int8(0).int32(25).int8(0xff).int8(0xff).int32(-1).int8(0).int8(0);
    });
  },
  /** SHOW name: one text column, one row (RowDescription only in the simple protocol; Describe gives it otherwise). */
  show(name: string, value: string, simple: boolean): Buffer[] {
    const out: Buffer[] = [];
    if (simple) out.push(localReply.showRowDescription(name));
    const v = Buffer.from(value);
    out.push(MessageWriter.message(B.DataRow, (w) => w.int8(0).int8(1).int32(v.length).bytes(v)));
    out.push(localReply.commandComplete('SHOW'));
    return out;
  },
};
