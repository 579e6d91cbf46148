//! Rewrites: pgshape sends the server an equivalent, faster statement in place of a bad one.

pub mod semijoin;
