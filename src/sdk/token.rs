//! [`AccessToken`]: a user access token that never shows itself, and what can be read from it.
//!
//! The Calling SDK decides most `ExpectedError`s from the token's JWT payload before any network
//! traffic; [`AccessToken::claims`] decodes that payload (base64url + JSON, no signature check:
//! that is the service's job) so the [`preflight`](crate::preflight) layer can decide the same way.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
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
        match serde_json::from_slice(&json).map_err(|_| TokenError::Json)? {
            serde_json::Value::Object(map) => Ok(Claims { map }),
            _ => Err(TokenError::NotAnObject),
        }
    }

    /// An unsigned JWT (`alg: none`) with `claims` as its payload: for tests and the simulator,
    /// never for a real service.
    ///
    /// ```
    /// use callagent_retry::sdk::AccessToken;
    /// let t = AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_u", "acsScope": "voip"}));
    /// assert_eq!(t.claims().unwrap().skypeid(), Some("acs:r_u"));
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

/// The claims of an access token, each read on its own: one claim of an unexpected type (a
/// fractional `exp`, which RFC 7519 allows; a numeric `acsScope`) never hides the others.
///
/// "Present" follows the SDK's JavaScript: a claim that is missing, `null`, `false`, `0` or an
/// empty string is absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    map: serde_json::Map<String, serde_json::Value>,
}

fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

impl Claims {
    /// A claim as it came, if present at all.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.map.get(name)
    }

    fn present(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(truthy)
    }

    /// The user id (`skypeid`), when it is a non-empty string.
    pub fn skypeid(&self) -> Option<&str> {
        self.map.get("skypeid").and_then(|v| v.as_str()).filter(|s| !s.is_empty())
    }

    /// Whether a user id (`skypeid`) is present.
    pub fn has_user_id(&self) -> bool {
        self.present("skypeid")
    }

    /// The scope (`acsScope`) as it came: the SDK wants a string.
    pub fn acs_scope(&self) -> Option<&serde_json::Value> {
        self.map.get("acsScope")
    }

    /// Whether a Communication Services resource (`resourceId`) is present.
    pub fn has_resource_id(&self) -> bool {
        self.present("resourceId")
    }

    /// Whether an Entra tenant (`tid`) is present: the SDK's mark of a Teams user's token
    /// (which agent kind the token may create).
    pub fn is_teams_user(&self) -> bool {
        self.present("tid")
    }

    /// Whether a scope (`acsScope`) is present at all (of any type).
    pub fn has_acs_scope(&self) -> bool {
        self.present("acsScope")
    }

    /// Whether an Entra object id (`oid`) is present: the identity of a token with neither
    /// `acsScope` nor `resourceId`.
    pub fn has_object_id(&self) -> bool {
        self.present("oid")
    }

    /// Whether the user id (`skypeid`) is a Teams user's, as the SDK tells it from the id's form
    /// (not from `tid`): `8:` followed by the id, as JavaScript turns it into a string, starts
    /// with `8:orgid:`, `8:dod:`, `8:gcch:` or `8:teamsvisitor:`. Such an identity needs no
    /// `resourceId`.
    pub fn is_teams_identity(&self) -> bool {
        let Some(id) = self.map.get("skypeid") else { return false };
        let mut text = String::new();
        js_string(id, &mut text);
        ["orgid:", "dod:", "gcch:", "teamsvisitor:"].iter().any(|p| text.starts_with(p))
    }
}

/// Appends `v` as JavaScript's template literals turn it into a string (enough of it to tell a
/// prefix: arrays join their elements with `,`, `null` elements are empty).
fn js_string(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    js_string(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

impl Claims {
    /// Expiry in seconds since the Unix epoch (`exp`), when it is a number (fractions allowed).
    pub fn exp(&self) -> Option<f64> {
        self.map.get("exp").and_then(serde_json::Value::as_f64)
    }
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
    /// The payload is not JSON.
    #[error("the access token's payload is not JSON")]
    Json,
    /// The payload is JSON but not an object.
    #[error("the access token's payload is not a JSON object")]
    NotAnObject,
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
            ("a.WzEsMl0.c", TokenError::NotAnObject),
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
        assert_eq!(t.claims().unwrap().exp(), Some(5.0));
        assert_eq!(padded.claims().unwrap().exp(), Some(5.0));
    }

    #[test]
    fn each_claim_is_read_on_its_own() {
        let t = AccessToken::unsigned(&serde_json::json!({
            "exp": 1.5, "acsScope": 7, "skypeid": "acs:u", "tid": "", "resourceId": null
        }));
        let c = t.claims().unwrap();
        assert_eq!(
            (c.exp(), c.skypeid(), c.acs_scope()),
            (Some(1.5), Some("acs:u"), Some(&serde_json::json!(7)))
        );
        assert!(!c.is_teams_user() && !c.has_resource_id() && c.has_user_id());
        let c = AccessToken::unsigned(&serde_json::json!({"exp": "5"})).claims().unwrap();
        assert_eq!(c.exp(), None, "a string exp is not a number");
    }
}
