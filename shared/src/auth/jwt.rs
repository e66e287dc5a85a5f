//! HS256 access tokens with `sub`, `email`, `role`, `broker_id`, `iat`, `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};

use crate::config::Settings;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_id: Option<i64>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn user_id(&self) -> Result<i64> {
        self.sub.parse().map_err(|_| Error::Unauthorized("Invalid authentication credentials".into()))
    }
}

pub fn issue(settings: &Settings, user_id: i64, email: &str, role: &str, broker_id: Option<i64>) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_string(),
        email: email.to_string(),
        role: role.to_string(),
        broker_id,
        iat: now,
        exp: now + settings.jwt_expire_minutes * 60,
    };
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(settings.jwt_secret()))
        .map_err(Error::internal)
}

/// Verifies signature (HS256 only), expiry (no leeway) and the presence of every claim.
pub fn verify(settings: &Settings, token: &str) -> Result<Claims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "sub", "iat"]);
    decode::<Claims>(token, &DecodingKey::from_secret(settings.jwt_secret()), &v).map(|d| d.claims).map_err(|e| match e
        .kind()
    {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::Unauthorized("Token has expired".into()),
        _ => Error::Unauthorized("Invalid authentication credentials".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn settings() -> Settings {
        Settings::from_lookup(|_| None).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_claim() {
        let s = settings();
        let t = issue(&s, 7, "a@b.cl", "ADMIN", Some(3)).unwrap();
        let c = verify(&s, &t).unwrap();
        assert_eq!((c.sub.as_str(), c.role.as_str(), c.broker_id), ("7", "ADMIN", Some(3)));
        assert_eq!(c.exp - c.iat, 3600);
    }

    #[test]
    fn tampered_and_unsigned_tokens_are_rejected() {
        let s = settings();
        let t = issue(&s, 7, "a@b.cl", "AGENT", Some(3)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"sub": "7", "email": "a@b.cl", "role": "SUPERADMIN", "iat": 1, "exp": 9999999999i64})
                .to_string(),
        );
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(verify(&s, &tampered).is_err());
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(verify(&s, &format!("{none_header}.{forged_payload}.")).is_err());
        assert!(verify(&s, "garbage").is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let s = settings();
        let claims = Claims {
            sub: "1".into(),
            email: "a@b.cl".into(),
            role: "ADMIN".into(),
            broker_id: Some(1),
            iat: 1,
            exp: 2,
        };
        let t = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(s.jwt_secret())).unwrap();
        assert!(matches!(verify(&s, &t), Err(Error::Unauthorized(m)) if m.contains("expired")));
    }
}
