//! HMAC-SHA256 request signing, as the ACS REST "Authentication" page defines it.
//!
//! ```text
//! x-ms-content-sha256 = base64(SHA-256(body))
//! string to sign      = VERB "\n" PATH_AND_QUERY "\n" x-ms-date ";" host ";" x-ms-content-sha256
//! Authorization       = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
//!                       base64(HMAC-SHA256(base64-decoded access key, string to sign))
//! ```

use std::time::SystemTime;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::connection_string::AccessKey;

/// The headers that authenticate one request. `authorization` is a secret (a signature lets
/// anyone replay the request while its date is fresh): wiped when dropped, never logged.
pub(crate) struct Signature {
    /// `x-ms-date`, RFC 1123.
    pub(crate) date: String,
    /// `x-ms-content-sha256`.
    pub(crate) content_hash: String,
    /// `Authorization`.
    pub(crate) authorization: Zeroizing<String>,
}

/// Signs a request to `host` (with its port when not the scheme's default), whose request
/// target is `path_and_query` (exactly as sent), at `now`.
pub(crate) fn sign(
    key: &AccessKey,
    verb: &str,
    path_and_query: &str,
    host: &str,
    body: &[u8],
    now: SystemTime,
) -> Signature {
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = httpdate::fmt_http_date(now);
    let content_hash = b64.encode(ring::digest::digest(&ring::digest::SHA256, body));
    let to_sign = format!("{verb}\n{path_and_query}\n{date};{host};{content_hash}");
    let mac =
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.bytes()), to_sign.as_bytes());
    let mut authorization = Zeroizing::new(String::from(
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=",
    ));
    b64.encode_string(mac.as_ref(), &mut authorization);
    Signature { date, content_hash, authorization }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::ConnectionString;

    /// Vectors from Microsoft's own signer (`createCommunicationAccessKeyCredentialPolicy` of
    /// `@azure/communication-common` 2.x, run under Node with `Date` fixed at
    /// 2024-01-02T03:04:05Z and the key below): its `Host`, `x-ms-date`, `x-ms-content-sha256`
    /// and `Authorization` headers, verbatim.
    #[test]
    fn matches_microsofts_signer() {
        let key = "c2VjcmV0LWtleS1ieXRlcw==";
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        for (endpoint, verb, path, body, hash, sig) in [
            (
                "https://r.communication.azure.com/",
                "POST",
                "/identities?api-version=2023-10-01",
                &br#"{"createTokenWithScopes":["voip"],"expiresInMinutes":60}"#[..],
                "riqUJMgNPJKPTzCcn0B7ducXw4YeJM1Nm7f+AosM3sU=",
                "IcYN7VYhO7sBAUOH2edh+FkdhoZSblwvjI5m9JoOk50=",
            ),
            (
                "http://127.0.0.1:8443/",
                "DELETE",
                "/identities/8%3Aacs%3Ar_1?api-version=2023-10-01",
                &b""[..],
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "vgtwn7ds2+LGWCfQl+9JyYW4KD4RSx0i0YRfA62RUrE=",
            ),
        ] {
            let cs = ConnectionString::parse(&format!("endpoint={endpoint};accesskey={key}")).unwrap();
            let host = super::super::client::host_header(cs.endpoint());
            let s = sign(cs.key(), verb, path, &host, body, now);
            assert_eq!(s.date, "Tue, 02 Jan 2024 03:04:05 GMT");
            assert_eq!(s.content_hash, hash);
            assert_eq!(
                *s.authorization,
                format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}")
            );
        }
    }
}
