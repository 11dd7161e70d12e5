// iSCSI wire constants (RFC 7143 §11) and the limits this target declares and enforces.
// Pure data: opcodes, flag bits, status codes, and the target's side of every negotiated limit.

/** Opcodes sent by the initiator (RFC 7143 §11.2.1.2). */
export const enum InitiatorOpcode {
  NopOut = 0x00,
  ScsiCommand = 0x01,
  TaskManagementRequest = 0x02,
  LoginRequest = 0x03,
  TextRequest = 0x04,
  DataOut = 0x05,
  LogoutRequest = 0x06,
  Snack = 0x10,
}

/** Opcodes sent by the target. */
export const enum TargetOpcode {
  NopIn = 0x20,
  ScsiResponse = 0x21,
  TaskManagementResponse = 0x22,
  LoginResponse = 0x23,
  TextResponse = 0x24,
  DataIn = 0x25,
  LogoutResponse = 0x26,
  R2T = 0x31,
  AsyncMessage = 0x32,
  Reject = 0x3f,
}

export const bhsBytes = 48;
export const digestBytes = 4;
/** Reserved tag value: "no task" / "no transfer" (RFC 7143 §11.2.1.8). */
export const tagNone = 0xffffffff;

/** Login stages (CSG/NSG, RFC 7143 §11.12.3). */
export const enum LoginStage {
  Security = 0,
  Operational = 1,
  FullFeature = 3,
}

/** Login Response status class << 8 | detail (RFC 7143 §11.13.5). */
export const enum LoginStatus {
  Success = 0x0000,
  TargetMovedTemporarily = 0x0101,
  InitiatorError = 0x0200,
  AuthenticationFailure = 0x0201,
  AuthorizationFailure = 0x0202,
  TargetNotFound = 0x0203,
  TargetRemoved = 0x0204,
  UnsupportedVersion = 0x0205,
  TooManyConnections = 0x0206,
  MissingParameter = 0x0207,
  CantIncludeInSession = 0x0208,
  SessionTypeNotSupported = 0x0209,
  SessionDoesNotExist = 0x020a,
  InvalidDuringLogin = 0x020b,
  TargetError = 0x0300,
  ServiceUnavailable = 0x0301,
  OutOfResources = 0x0302,
}

/** Reject reason codes (RFC 7143 §11.17.1). */
export const enum RejectReason {
  DataDigestError = 0x02,
  SnackReject = 0x03,
  ProtocolError = 0x04,
  CommandNotSupported = 0x05,
  ImmediateCommandReject = 0x06,
  TaskInProgress = 0x07,
  InvalidDataAck = 0x08,
  InvalidPduField = 0x09,
  LongOperationReject = 0x0a,
  WaitingForLogout = 0x0c,
}

/** Logout reason codes (RFC 7143 §11.14.1) and response codes (§11.15.1). */
export const enum LogoutReason {
  CloseSession = 0,
  CloseConnection = 1,
  RemoveConnectionForRecovery = 2,
}
export const enum LogoutResponseCode {
  Closed = 0,
  CidNotFound = 1,
  RecoveryNotSupported = 2,
  CleanupFailed = 3,
}

/** Async Message events (RFC 7143 §11.9.1). */
export const enum AsyncEvent {
  ScsiEvent = 0,
  RequestLogout = 1,
  DropConnection = 2,
  DropSession = 3,
  RequestNegotiation = 4,
}

/** SCSI Response "Response" field (RFC 7143 §11.4.3). */
export const enum ScsiResponseCode {
  CommandCompleted = 0x00,
  TargetFailure = 0x01,
}

/** The target's side of the negotiation: what it declares or is willing to accept. Values stay
 *  inside RFC 7143 §13 bounds (512..2^24-1 for the byte lengths). */
export const targetMaxRecvDataSegmentBytes = 256 * 1024;
export const targetMaxBurstBytes = 8 * 1024 * 1024;
export const targetFirstBurstBytes = 256 * 1024;
export const targetMaxOutstandingR2T = 16;
export const targetDefaultTime2WaitS = 2;
/** ERL 0: no task state is kept after a connection is lost. */
export const targetDefaultTime2RetainS = 0;

/** Transport limits (defaults; the portal takes overrides). */
/** Commands the initiator may have outstanding per session: the MaxCmdSN window. */
export const commandWindowMax = 128;
/** Largest Data-Out buffer one command may need (ExpectedDataTransferLength of a write). The SCSI
 *  layer should advertise a maximum transfer length no larger than this (VPD page 0xB0). */
export const commandDataBytesMax = 32 * 1024 * 1024;
/** Data-Out bytes buffered per connection before R2Ts are held back (the head command always
 *  proceeds, so this cannot deadlock). */
export const pendingDataBytesMax = 64 * 1024 * 1024;
/** Text exchanged during one login phase or one Text negotiation, all PDUs together. */
export const textBytesMax = 64 * 1024;
