// Protocol constants: startup request codes, message type bytes and authentication request kinds.

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

// Backend (server → client) message types.
export const B = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  ParameterStatus: 0x53, // 'S'
  ReadyForQuery: 0x5a, // 'Z'
  ErrorResponse: 0x45, // 'E'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  CommandComplete: 0x43, // 'C'
  EmptyQueryResponse: 0x49, // 'I'
  PortalSuspended: 0x73, // 's'
  CopyInResponse: 0x47, // 'G'
  ParseComplete: 0x31, // '1'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  NoData: 0x6e, // 'n'
  RowDescription: 0x54, // 'T'
  DataRow: 0x44, // 'D'
} as const;

// Transaction status in ReadyForQuery.
export const TX = {
  Idle: 0x49, // 'I'
  InTransaction: 0x54, // 'T'
  Failed: 0x45, // 'E'
} as const;

// Frontend (client → server) message types.
export const F = {
  Query: 0x51, // 'Q'
  Parse: 0x50, // 'P'
  Bind: 0x42, // 'B'
  Describe: 0x44, // 'D'
  Execute: 0x45, // 'E'
  Sync: 0x53, // 'S'
  Flush: 0x48, // 'H'
  Close: 0x43, // 'C'
  FunctionCall: 0x46, // 'F'
  Terminate: 0x58, // 'X'
  Password: 0x70, // 'p' (PasswordMessage, SASLInitialResponse, SASLResponse)
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
} as const;

export const AUTH = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;
