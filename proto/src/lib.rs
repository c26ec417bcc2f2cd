//! Throng gRPC contract.
