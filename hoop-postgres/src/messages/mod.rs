//! One type per message. Each borrows from the original frame (`parse`) and can build a
//! fresh one (`encode`); a message that is not rewritten is forwarded as its original
//! bytes.

mod auth;
mod backend_key_data;
mod bind;
mod command_complete;
mod copy;
mod cursor;
mod data_row;
mod describe;
mod error_response;
mod execute;
mod function_call;
mod negotiate_protocol_version;
mod parameter_status;
mod parse;
mod password;
mod query;
mod ready_for_query;
mod row_description;
pub mod tags;

pub use auth::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use command_complete::CommandComplete;
pub use copy::{CopyFail, CopyResponse};
pub use cursor::Cursor;
pub use data_row::DataRow;
pub use describe::{Close, Describe, Target};
pub use error_response::{ErrorFields, ErrorResponse, Severity};
pub use execute::Execute;
pub use function_call::FunctionCall;
pub use negotiate_protocol_version::NegotiateProtocolVersion;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use password::{PasswordMessage, SaslInitialResponse};
pub use query::Query;
pub use ready_for_query::{ReadyForQuery, TransactionStatus};
pub use row_description::{FieldDescription, RowDescription};

/// Appends a NUL-terminated string.
pub(crate) fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}
