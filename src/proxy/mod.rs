//! The proxy: listener, per-core workers, sessions and the statement tracker.

pub mod tracker;
