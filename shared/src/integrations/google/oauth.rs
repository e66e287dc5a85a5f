//! Google OAuth 2.0 for a web server application: the consent URL, the authorization-code
//! exchange and the refresh-token grant at `{GOOGLE_OAUTH_BASE}/token` (form-encoded, as Google
//! expects), and the connected account's email.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{OAuthClient, SERVICE, url};
use crate::error::{Error, Result};
use crate::infra::Infra;
use crate::integrations::{breaker, http, send_json};

/// Google's consent screen (not configurable: the user's browser goes there, not our servers).
pub const AUTH_ENDPOINT: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// Calendar read/write, plus the account's email to show which calendar is connected.
pub const SCOPES: &str = "https://www.googleapis.com/auth/calendar openid email";

/// The consent URL: offline access (a refresh token) and a forced consent prompt, so a reconnect
/// also returns a refresh token.
pub fn auth_url(client: OAuthClient<'_>, state: &str) -> Result<String> {
    let url = reqwest::Url::parse_with_params(
        AUTH_ENDPOINT,
        [
            ("client_id", client.client_id),
            ("redirect_uri", client.redirect_uri),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
            ("state", state),
        ],
    )
    .map_err(Error::internal)?;
    Ok(url.into())
}

/// What the token endpoint returns.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    /// Seconds the access token lives.
    pub expires_in: i64,
    /// Present on the code exchange with `access_type=offline`.
    pub refresh_token: Option<SecretString>,
}

fn tokens(body: &Value) -> Result<Tokens> {
    let access_token = body["access_token"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| {
        Error::upstream_permanent(SERVICE, "upstream_invalid", None, "token response without access_token")
    })?;
    Ok(Tokens {
        access_token: SecretString::from(access_token),
        expires_in: body["expires_in"].as_i64().unwrap_or(3600),
        refresh_token: body["refresh_token"].as_str().filter(|t| !t.is_empty()).map(SecretString::from),
    })
}

async fn token_request(infra: &Infra, form: &[(&str, &str)]) -> Result<Tokens> {
    let url = url(&infra.settings.providers.google_oauth_base, &["token"])?;
    let req = http().post(url).timeout(infra.settings.providers.timeout).form(form);
    let body = breaker::CALENDAR.call(infra, || send_json(SERVICE, req)).await?;
    tokens(&body)
}

/// Exchanges the authorization code of the consent redirect.
pub async fn exchange_code(infra: &Infra, client: OAuthClient<'_>, code: &str) -> Result<Tokens> {
    token_request(
        infra,
        &[
            ("code", code),
            ("client_id", client.client_id),
            ("client_secret", client.client_secret.expose_secret()),
            ("redirect_uri", client.redirect_uri),
            ("grant_type", "authorization_code"),
        ],
    )
    .await
}

/// A fresh access token from a stored refresh token. A revoked grant is Google's 400
/// `invalid_grant`: permanent.
pub async fn refresh(infra: &Infra, client: OAuthClient<'_>, refresh_token: &SecretString) -> Result<Tokens> {
    token_request(
        infra,
        &[
            ("client_id", client.client_id),
            ("client_secret", client.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
            ("grant_type", "refresh_token"),
        ],
    )
    .await
}

/// The account's email: the OpenID userinfo, else the id of its primary calendar (which is the
/// account's address).
pub async fn account_email(infra: &Infra, access_token: &SecretString) -> Result<Option<String>> {
    let base = &infra.settings.providers.google_api_base;
    let timeout = infra.settings.providers.timeout;
    let get = |u: reqwest::Url| http().get(u).timeout(timeout).bearer_auth(access_token.expose_secret());
    let info = get(url(base, &["oauth2", "v2", "userinfo"])?);
    match breaker::CALENDAR.call(infra, || send_json(SERVICE, info)).await {
        Ok(body) if body["email"].is_string() => return Ok(body["email"].as_str().map(str::to_lowercase)),
        Ok(_) => {}
        Err(e) => tracing::info!(error = %e, "userinfo failed; reading the primary calendar instead"),
    }
    let primary = get(url(base, &["calendar", "v3", "calendars", "primary"])?);
    let body = breaker::CALENDAR.call(infra, || send_json(SERVICE, primary)).await?;
    Ok(body["id"].as_str().filter(|id| id.contains('@')).map(str::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_url_asks_for_offline_calendar_access() {
        let secret = SecretString::from("s3cret");
        let client = OAuthClient { client_id: "cid", client_secret: &secret, redirect_uri: "https://app.cl/cb?x=1" };
        let url = reqwest::Url::parse(&auth_url(client, "st.ate").unwrap()).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("accounts.google.com"));
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "https://app.cl/cb?x=1");
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["state"], "st.ate");
        assert!(q["scope"].contains("auth/calendar"));
        assert!(!url.as_str().contains("s3cret"));
    }

    #[test]
    fn token_answers_without_an_access_token_are_refused() {
        assert!(tokens(&serde_json::json!({"token_type": "Bearer"})).is_err());
        let t = tokens(&serde_json::json!({"access_token": "a", "expires_in": 10, "refresh_token": "r"})).unwrap();
        assert_eq!((t.access_token.expose_secret(), t.expires_in), ("a", 10));
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r");
    }
}
