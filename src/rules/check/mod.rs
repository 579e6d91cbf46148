//! `pgshape check`.
