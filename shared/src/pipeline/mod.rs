//! The sales pipeline: the pure rules of automatic stage moves ([`rules`]) and the use cases around
//! them ([`service`]: board, columns, metrics, auto-advance and the nightly refresh).

pub mod rules;
pub mod service;
