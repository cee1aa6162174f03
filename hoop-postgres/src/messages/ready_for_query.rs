//! `ReadyForQuery`: the end of a request cycle.

use super::tags;
use crate::CodecError;
use crate::codec::Frame;

/// Transaction status reported with ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction (`I`).
    Idle,
    /// In a transaction block (`T`).
    InTransaction,
    /// In a failed transaction block (`E`).
    Failed,
}

/// The server is ready for a new query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyForQuery {
    /// Transaction status.
    pub status: TransactionStatus,
}

impl ReadyForQuery {
    /// Reads a `Z` body.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let status = match body {
            [b'I'] => TransactionStatus::Idle,
            [b'T'] => TransactionStatus::InTransaction,
            [b'E'] => TransactionStatus::Failed,
            _ => {
                return Err(CodecError::Invalid {
                    what: "ReadyForQuery",
                    detail: format!("{} byte body", body.len()),
                });
            }
        };
        Ok(ReadyForQuery { status })
    }

    /// Builds a `Z` message.
    pub fn encode(&self) -> Frame {
        let b = match self.status {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        };
        Frame::new(tags::READY_FOR_QUERY, &[b])
    }
}
