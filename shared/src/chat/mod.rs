//! Sofía's conversation: the pure engine that reads lead messages and decides what comes next.

pub mod engine;
