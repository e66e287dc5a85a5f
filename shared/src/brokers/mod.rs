//! Brokers (the tenants), the users of each broker, and each broker's AI configuration: prompt
//! sections and lead rules ([`config`]), the prompt builder ([`prompt`]) and prompt versions
//! ([`versions`]).

pub mod config;
pub mod prompt;
pub mod repo;
pub mod service;
pub mod users;
pub mod versions;
