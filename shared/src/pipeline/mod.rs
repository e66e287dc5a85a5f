//! The sales pipeline: the pure rules of automatic stage moves ([`rules`]).

pub mod rules;
