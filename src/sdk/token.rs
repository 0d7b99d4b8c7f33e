//! [`AccessToken`]: a user access token that never shows itself, and what can be read from it.
//!
//! The Calling SDK decides most `ExpectedError`s from the token's JWT payload before any network
//! traffic; [`AccessToken::claims`] decodes that payload (base64url + JSON, no signature check:
//! that is the service's job) so the [`preflight`](crate::preflight) layer can decide the same way.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use zeroize::Zeroizing;

/// A user access token. `Debug` and `Display` print `[redacted]`; the text is wiped from memory
/// when the last copy is dropped.
///
/// ```
/// use callagent_retry::sdk::AccessToken;
/// let t = AccessToken::new("eyJhbGciOi.secret.sig");
/// assert_eq!(format!("{t} {t:?}"), "[redacted] AccessToken([redacted])");
/// assert_eq!(t.expose_secret(), "eyJhbGciOi.secret.sig");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Wraps a token's text.
    pub fn new(token: impl Into<String>) -> Self {
        Self(Zeroizing::new(token.into()))
    }

    /// The token's text, for handing to the SDK. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Decodes the JWT payload. Errors say what is wrong, never what the token contains.
    pub fn claims(&self) -> Result<Claims, TokenError> {
        let mut parts = self.0.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotAJwt);
        };
        // Bounded: a payload larger than any real token is not decoded.
        if payload.len() > 64 * 1024 {
            return Err(TokenError::TooLarge);
        }
        let engine = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let json = Zeroizing::new(engine.decode(payload).map_err(|_| TokenError::Base64)?);
        serde_json::from_slice(&json).map_err(|_| TokenError::Json)
    }

    /// An unsigned JWT (`alg: none`) with `claims` as its payload: for tests and the simulator,
    /// never for a real service.
    ///
    /// ```
    /// use callagent_retry::sdk::AccessToken;
    /// let t = AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_u", "acsScope": "voip"}));
    /// assert_eq!(t.claims().unwrap().skypeid.as_deref(), Some("acs:r_u"));
    /// ```
    pub fn unsigned(claims: &serde_json::Value) -> Self {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(claims.to_string());
        Self::new(format!("{header}.{payload}.unsigned"))
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for AccessToken {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

/// The claims of an ACS (or Teams-exchanged) access token that decide CallAgent creation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The user id (`skypeid`).
    pub skypeid: Option<String>,
    /// The scope (`acsScope`): should be a string containing `voip` or `voip.join`.
    #[serde(rename = "acsScope")]
    pub acs_scope: Option<serde_json::Value>,
    /// The Communication Services resource (`resourceId`).
    #[serde(rename = "resourceId")]
    pub resource_id: Option<String>,
    /// The Entra tenant (`tid`): present on a Teams user's token.
    pub tid: Option<String>,
    /// Expiry, seconds since the Unix epoch (`exp`).
    pub exp: Option<u64>,
}

/// Why a token's payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three dot-separated parts.
    #[error("the access token is not a JWT (three dot-separated parts)")]
    NotAJwt,
    /// The payload is larger than any real token's.
    #[error("the access token's payload is implausibly large")]
    TooLarge,
    /// The payload is not base64url.
    #[error("the access token's payload is not base64url")]
    Base64,
    /// The payload is not a JSON object of the expected shape.
    #[error("the access token's payload is not the expected JSON")]
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_tokens_are_errors_without_their_text() {
        for (text, err) in [
            ("opaque-token", TokenError::NotAJwt),
            ("a.b.c.d", TokenError::NotAJwt),
            ("a.!!!.c", TokenError::Base64),
            ("a.bm90IGpzb24.c", TokenError::Json),
            ("a.WzEsMl0.c", TokenError::Json),
        ] {
            let e = AccessToken::new(text).claims().unwrap_err();
            assert_eq!(e, err, "{text}");
            assert!(!e.to_string().contains(text));
        }
    }

    #[test]
    fn padded_and_unpadded_payloads_decode() {
        let t = AccessToken::unsigned(&serde_json::json!({"exp": 5}));
        let padded = {
            let mut parts: Vec<String> = t.expose_secret().split('.').map(str::to_owned).collect();
            while !parts[1].len().is_multiple_of(4) {
                parts[1].push('=');
            }
            AccessToken::new(parts.join("."))
        };
        assert_eq!(t.claims().unwrap().exp, Some(5));
        assert_eq!(padded.claims().unwrap().exp, Some(5));
    }
}
