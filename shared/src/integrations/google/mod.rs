//! Google: OAuth 2.0 ([`oauth`]: consent URL, code exchange, token refresh, account email) and
//! Calendar API v3 ([`calendar`]: events with a Meet link, free/busy), in Google's wire format
//! against `GOOGLE_OAUTH_BASE` and `GOOGLE_API_BASE`. Every call runs inside the `calendar`
//! circuit breaker; errors are classed by [`crate::integrations::send_json`].

pub mod calendar;
pub mod oauth;

use secrecy::SecretString;

use crate::config::Settings;
use crate::error::{Error, Result};

/// The service name of Google's errors (and of its breaker in `/health`).
pub const SERVICE: &str = "calendar";

/// This deployment's OAuth client.
#[derive(Clone, Copy, Debug)]
pub struct OAuthClient<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub redirect_uri: &'a str,
}

/// The OAuth client, when `GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET` and `GOOGLE_REDIRECT_URI` are
/// all set; otherwise 400 `calendar_not_configured` (SPEC §2: a clear code, never a crash).
pub fn oauth_client(settings: &Settings) -> Result<OAuthClient<'_>> {
    let p = &settings.providers;
    match (p.google_client_id.as_deref(), p.google_client_secret.as_ref(), p.google_redirect_uri.as_deref()) {
        (Some(client_id), Some(client_secret), Some(redirect_uri)) => {
            Ok(OAuthClient { client_id, client_secret, redirect_uri })
        }
        _ => Err(Error::bad_request(
            "calendar_not_configured",
            "Google Calendar is not configured on this server (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_REDIRECT_URI)",
        )),
    }
}

/// `base` followed by `segments`, each percent-encoded (calendar ids contain `@` and `#`).
pub(crate) fn url(base: &str, segments: &[&str]) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).map_err(|e| Error::Config(format!("invalid Google base URL: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| Error::Config("invalid Google base URL: it cannot have a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_ids_are_encoded_as_one_segment() {
        let u = url("http://127.0.0.1:9/", &["calendar", "v3", "calendars", "a@group.calendar.google.com#x", "events"])
            .unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9/calendar/v3/calendars/a@group.calendar.google.com%23x/events");
        let u = url("https://www.googleapis.com", &["calendar", "v3", "freeBusy"]).unwrap();
        assert_eq!(u.as_str(), "https://www.googleapis.com/calendar/v3/freeBusy");
    }

    #[test]
    fn the_client_needs_all_three_settings() {
        let s = Settings::from_lookup(|k| (k == "GOOGLE_CLIENT_ID").then(|| "id".to_string())).unwrap();
        assert_eq!(oauth_client(&s).unwrap_err().code(), "calendar_not_configured");
        let s = Settings::from_lookup(|k| match k {
            "GOOGLE_CLIENT_ID" | "GOOGLE_CLIENT_SECRET" | "GOOGLE_REDIRECT_URI" => Some("x".to_string()),
            _ => None,
        })
        .unwrap();
        assert!(oauth_client(&s).is_ok());
    }
}
