//! What the client's messages make the target answer, in order.
//!
//! The frontend half pushes one entry per message it forwards; the backend half pops
//! them as the answers arrive. This is how the backend knows which statement a DataRow
//! belongs to (for masking and recording) and where the gateway's own error goes.

use std::sync::Arc;
use std::time::Instant;

use hoop_core::Command;

use crate::codec::Frame;

/// One expected answer.
#[derive(Debug)]
pub enum Expect {
    /// A simple query (or a FunctionCall): results, then ReadyForQuery.
    Query {
        /// The classified command (for recording), if known.
        cmd: Option<Arc<Command>>,
        /// When it was forwarded.
        started: Instant,
        /// Replace the target's first ErrorResponse with this (a denied statement was
        /// replaced by one that fails, so the target's transaction state matches).
        replace_error: Option<Frame>,
    },
    /// Parse: ParseComplete or an error.
    Parse {
        /// Statement name.
        name: String,
        /// See [`Expect::Query::replace_error`].
        replace_error: Option<Frame>,
    },
    /// Bind: BindComplete.
    Bind {
        /// Portal.
        portal: String,
        /// Statement.
        statement: String,
        /// Result formats.
        formats: Vec<i16>,
    },
    /// Describe of a statement: ParameterDescription, then RowDescription or NoData.
    DescribeStatement(String),
    /// Describe of a portal: RowDescription or NoData.
    DescribePortal(String),
    /// Execute: rows, then CommandComplete / EmptyQueryResponse / PortalSuspended.
    Execute {
        /// Portal.
        portal: String,
        /// The statement's command, for recording.
        cmd: Option<Arc<Command>>,
        /// When it was forwarded.
        started: Instant,
    },
    /// Close: CloseComplete.
    Close {
        /// Statement (true) or portal.
        statement: bool,
        /// Name.
        name: String,
    },
    /// Sync: ReadyForQuery.
    Sync,
}

impl Expect {
    /// Whether this entry belongs to an extended-protocol batch (skipped up to Sync
    /// after an error).
    pub fn is_extended(&self) -> bool {
        !matches!(self, Expect::Query { .. } | Expect::Sync)
    }
}

/// The body of a statement that always fails in the parser: sent in place of a denied
/// statement so the target aborts the batch or transaction exactly as it would for an
/// error, and the gateway's ErrorResponse replaces its syntax error.
pub const FAILING_STATEMENT: &str = "SELECT hoop_statement_denied(";
