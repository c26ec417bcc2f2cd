//! The node's one error enum for media operations, mapped onto gRPC codes at
//! the edge (`rpc`). Messages name the object; they never carry internals the
//! caller cannot act on.

use tonic::{Code, Status};

/// What went wrong with a media request.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A request field is malformed (bad id, bad JSON, bad value).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Request field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The object does not exist on this node (never did, or closed).
    #[error("{kind} {id} not found")]
    NotFound {
        /// "router", "transport", ...
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A valid request the current state refuses.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The worker refused or failed the operation (bad parameters it detected,
    /// or a worker-side limit).
    #[error("{0}")]
    Rejected(String),
    /// The worker that hosts the object is gone.
    #[error("worker {0} is not available")]
    WorkerUnavailable(usize),
}

impl MediaError {
    /// Shorthand for [`MediaError::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl ToString) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`MediaError::NotFound`].
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Rejected(_) => Code::InvalidArgument,
            Self::WorkerUnavailable(_) => Code::Unavailable,
        }
    }
}

impl From<MediaError> for Status {
    fn from(e: MediaError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
