//! Throng coordinator.
