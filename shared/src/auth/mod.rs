//! Authentication: argon2id passwords, HS256 JWTs, registration, login and the per-request check of
//! the user behind a token.

pub mod jwt;
pub mod password;
pub mod service;

pub use jwt::Claims;
pub use service::{AuthUser, Registration};
