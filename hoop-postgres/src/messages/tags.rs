//! Message tags.

/// Frontend: simple query.
pub const QUERY: u8 = b'Q';
/// Frontend: Parse.
pub const PARSE: u8 = b'P';
/// Frontend: Bind.
pub const BIND: u8 = b'B';
/// Frontend: Describe.
pub const DESCRIBE: u8 = b'D';
/// Frontend: Execute.
pub const EXECUTE: u8 = b'E';
/// Frontend: Close.
pub const CLOSE: u8 = b'C';
/// Frontend: Sync.
pub const SYNC: u8 = b'S';
/// Frontend: Flush.
pub const FLUSH: u8 = b'H';
/// Frontend: Terminate.
pub const TERMINATE: u8 = b'X';
/// Frontend: FunctionCall.
pub const FUNCTION_CALL: u8 = b'F';
/// Frontend: PasswordMessage / SASLInitialResponse / SASLResponse / GSSResponse.
pub const PASSWORD: u8 = b'p';
/// Both: CopyData.
pub const COPY_DATA: u8 = b'd';
/// Both: CopyDone.
pub const COPY_DONE: u8 = b'c';
/// Frontend: CopyFail.
pub const COPY_FAIL: u8 = b'f';

/// Backend: Authentication*.
pub const AUTHENTICATION: u8 = b'R';
/// Backend: BackendKeyData.
pub const BACKEND_KEY_DATA: u8 = b'K';
/// Backend: ParameterStatus.
pub const PARAMETER_STATUS: u8 = b'S';
/// Backend: ReadyForQuery.
pub const READY_FOR_QUERY: u8 = b'Z';
/// Backend: RowDescription.
pub const ROW_DESCRIPTION: u8 = b'T';
/// Backend: DataRow.
pub const DATA_ROW: u8 = b'D';
/// Backend: CommandComplete.
pub const COMMAND_COMPLETE: u8 = b'C';
/// Backend: EmptyQueryResponse.
pub const EMPTY_QUERY: u8 = b'I';
/// Backend: ErrorResponse.
pub const ERROR_RESPONSE: u8 = b'E';
/// Backend: NoticeResponse.
pub const NOTICE_RESPONSE: u8 = b'N';
/// Backend: NotificationResponse.
pub const NOTIFICATION: u8 = b'A';
/// Backend: ParseComplete.
pub const PARSE_COMPLETE: u8 = b'1';
/// Backend: BindComplete.
pub const BIND_COMPLETE: u8 = b'2';
/// Backend: CloseComplete.
pub const CLOSE_COMPLETE: u8 = b'3';
/// Backend: NoData.
pub const NO_DATA: u8 = b'n';
/// Backend: PortalSuspended.
pub const PORTAL_SUSPENDED: u8 = b's';
/// Backend: ParameterDescription.
pub const PARAMETER_DESCRIPTION: u8 = b't';
/// Backend: CopyInResponse.
pub const COPY_IN_RESPONSE: u8 = b'G';
/// Backend: CopyOutResponse.
pub const COPY_OUT_RESPONSE: u8 = b'H';
/// Backend: CopyBothResponse.
pub const COPY_BOTH_RESPONSE: u8 = b'W';
/// Backend: FunctionCallResponse.
pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
/// Backend: NegotiateProtocolVersion.
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
