//! PostgreSQL frontend/backend protocol v3: framing and the few messages pgshape decodes.
//!
//! Pure code over byte slices: no I/O, no tokio. See
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html>.
