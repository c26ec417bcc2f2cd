//! The node's one error type for media operations, mapped onto gRPC codes at
//! the edge ([`crate::rpc`]). mediasoup's own errors keep their type (and so
//! their kind: bad parameters, a worker gone, a timeout) until that mapping.
//! Messages name the object; they never carry internals the caller cannot act
//! on.

use mediasoup::prelude::{ConsumeError, ProduceError};
use mediasoup::router::PipeProducerToRouterError;
use mediasoup::worker::{CreateRouterError, RequestError};
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
    /// A request to the worker failed.
    #[error("{op}: {source}")]
    Request {
        /// What was asked ("create transport", "connect", ...).
        op: &'static str,
        /// The worker's answer.
        #[source]
        source: RequestError,
    },
    /// A router could not be created.
    #[error("cannot create router: {0}")]
    CreateRouter(#[from] CreateRouterError),
    /// A producer could not be created.
    #[error("cannot produce: {0}")]
    Produce(#[from] ProduceError),
    /// A consumer could not be created.
    #[error("cannot consume: {0}")]
    Consume(#[from] ConsumeError),
    /// A producer could not be piped to another router of this node.
    #[error("cannot pipe producer: {0}")]
    Pipe(#[from] PipeProducerToRouterError),
    /// The worker that hosts the object is gone.
    #[error("worker {0} is not available")]
    WorkerUnavailable(usize),
    /// A step failed because a test asked it to (see `throng-hooks`).
    #[error("injected failure at {0}")]
    Injected(&'static str),
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

    /// A worker request that failed doing `op`.
    pub fn request(op: &'static str) -> impl FnOnce(RequestError) -> Self {
        move |source| Self::Request { op, source }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Request { source, .. } => request_code(source),
            Self::CreateRouter(CreateRouterError::Request(e)) => request_code(e),
            Self::CreateRouter(CreateRouterError::FailedRtpCapabilitiesGeneration(_)) => {
                Code::Internal
            }
            Self::Produce(e) => match e {
                ProduceError::AlreadyExists(_) => Code::AlreadyExists,
                ProduceError::IncorrectRtpParameters(_)
                | ProduceError::FailedRtpParametersMapping(_) => Code::InvalidArgument,
                ProduceError::Request(e) => request_code(e),
            },
            Self::Consume(e) => match e {
                ConsumeError::ProducerNotFound(_) => Code::NotFound,
                ConsumeError::FailedRtpCapabilitiesValidation(_)
                | ConsumeError::BadConsumerRtpParameters(_) => Code::InvalidArgument,
                ConsumeError::Request(e) => request_code(e),
            },
            Self::Pipe(e) => match e {
                PipeProducerToRouterError::SameRouter => Code::FailedPrecondition,
                PipeProducerToRouterError::ProducerNotFound(_) => Code::NotFound,
                PipeProducerToRouterError::TransportFailed(e) => request_code(e),
                PipeProducerToRouterError::ConsumeFailed(_)
                | PipeProducerToRouterError::ProduceFailed(_) => Code::Internal,
            },
            Self::WorkerUnavailable(_) => Code::Unavailable,
            Self::Injected(_) => Code::Internal,
        }
    }
}

/// A worker's refusal is the caller's bad input; a worker that does not
/// answer is unavailable.
fn request_code(e: &RequestError) -> Code {
    match e {
        RequestError::ChannelClosed | RequestError::TimedOut => Code::Unavailable,
        RequestError::Response { .. } => Code::InvalidArgument,
        RequestError::FailedToParse { .. }
        | RequestError::NoData
        | RequestError::ResponseConversion(_) => Code::Internal,
    }
}

impl From<MediaError> for Status {
    fn from(e: MediaError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_errors_keep_their_kind_up_to_the_grpc_code() {
        let gone = MediaError::request("connect")(RequestError::ChannelClosed);
        assert_eq!(gone.code(), Code::Unavailable);
        let refused = MediaError::request("connect")(RequestError::Response {
            reason: "bad fingerprint".into(),
        });
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.to_string().contains("bad fingerprint"));
        assert_eq!(
            MediaError::from(ConsumeError::Request(RequestError::TimedOut)).code(),
            Code::Unavailable
        );
        assert_eq!(
            MediaError::from(PipeProducerToRouterError::SameRouter).code(),
            Code::FailedPrecondition
        );
    }
}
