//! Brokers (the tenants) and the users of each broker.

pub mod repo;
pub mod service;
pub mod users;
