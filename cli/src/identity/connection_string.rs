//! [`ConnectionString`]: a resource's endpoint and access key, read from a file, stdin or the
//! environment (never from a command-line value: `/proc/PID/cmdline` is readable by every local
//! user).

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

/// The environment variable [`ConnectionString::from_env`] reads.
pub const ENV_VAR: &str = "ACS_CONNECTION_STRING";

/// The longest connection string read (a real one is about 150 bytes).
const MAX_LEN: u64 = 64 * 1024;

/// The connection string of an Azure Communication Services resource:
/// `endpoint=https://NAME.communication.azure.com/;accesskey=BASE64`.
///
/// Keys are case-insensitive and in any order; a trailing `;` and surrounding whitespace are
/// fine. The access key is decoded at once and held in memory that is wiped when dropped; it has
/// no `Debug`, `Display` or accessor, and no error ever quotes it. `Debug` shows the endpoint.
///
/// ```
/// use callagent_cli::identity::ConnectionString;
/// let cs: ConnectionString =
///     "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0".parse().unwrap();
/// assert_eq!(cs.endpoint().as_str(), "https://contoso.communication.azure.com/");
/// assert!(!format!("{cs:?}").contains("c2VjcmV0"));
/// ```
pub struct ConnectionString {
    endpoint: url::Url,
    key: AccessKey,
}

/// The decoded access key. Deliberately without `Debug`: a struct holding one cannot derive it.
pub(crate) struct AccessKey(Zeroizing<Vec<u8>>);

impl AccessKey {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why a connection string was refused. No variant carries any part of the string's text: the
/// access key could be anywhere in a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A part is not `name=value`.
    #[error(
        "part {index} of the connection string is not `name=value`; it should read \
         `endpoint=https://NAME.communication.azure.com/;accesskey=KEY` (Azure portal → the \
         Communication Services resource → Keys → Connection string)"
    )]
    NotNameValue {
        /// The part's position, from 1.
        index: usize,
    },
    /// A part is neither `endpoint=` nor `accesskey=`.
    #[error(
        "part {index} of the connection string is neither endpoint= nor accesskey=; it should read \
         `endpoint=https://NAME.communication.azure.com/;accesskey=KEY`"
    )]
    UnknownPart {
        /// The part's position, from 1.
        index: usize,
    },
    /// `endpoint` or `accesskey` is missing or empty.
    #[error(
        "the connection string has no {0}: it should read \
         `endpoint=https://NAME.communication.azure.com/;accesskey=KEY` (Azure portal → the \
         Communication Services resource → Keys → Connection string)"
    )]
    Missing(&'static str),
    /// `endpoint` or `accesskey` is given twice.
    #[error("the connection string gives {0} twice; keep one")]
    Duplicate(&'static str),
    /// The access key is not base64.
    #[error(
        "the connection string's accesskey is not base64; copy the whole key from the Azure \
         portal (the resource → Keys), including any trailing `=`"
    )]
    KeyNotBase64,
    /// The endpoint is not an absolute URL.
    #[error(
        "the connection string's endpoint is not a URL; it should look like \
         https://NAME.communication.azure.com/"
    )]
    EndpointNotUrl,
    /// The endpoint's scheme is neither `https` nor (to loopback) `http`.
    #[error(
        "the connection string's endpoint must be https://NAME.communication.azure.com/ (the \
         scheme is neither https nor http)"
    )]
    EndpointScheme,
    /// `http://` to a host that is not loopback: the key's signatures and the tokens would
    /// cross the network in the clear.
    #[error(
        "the connection string's endpoint is http:// to {host}: only https:// is allowed, except \
         to loopback (127.0.0.1, ::1, localhost) for tests"
    )]
    PlainHttp {
        /// The endpoint's host (a public name, not a secret).
        host: String,
    },
    /// The endpoint has user info, a query or a fragment.
    #[error(
        "the connection string's endpoint has a user name, password, query or fragment; it \
         should be just https://NAME.communication.azure.com/"
    )]
    EndpointExtras,
    /// The connection string could not be read.
    #[error("cannot read the connection string from {from}: {kind}")]
    Read {
        /// Where it was read from (a path, `stdin`).
        from: String,
        /// What went wrong.
        kind: std::io::ErrorKind,
    },
    /// The source holds more than any connection string.
    #[error("{from} holds more than 64 KiB: that is not a connection string")]
    TooLarge {
        /// Where it was read from.
        from: String,
    },
    /// The source is not UTF-8.
    #[error("{from} is not UTF-8 text")]
    NotUtf8 {
        /// Where it was read from.
        from: String,
    },
    /// The environment variable is not set.
    #[error("{ENV_VAR} is not set")]
    NotSet,
}

impl ConnectionString {
    /// Parses `endpoint=…;accesskey=…`.
    pub fn parse(text: &str) -> Result<Self, ConnectionStringError> {
        let (mut endpoint, mut key) = (None, None);
        for (i, part) in text.trim().split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(ConnectionStringError::NotNameValue { index: i + 1 });
            };
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => &mut endpoint,
                "accesskey" => &mut key,
                _ => return Err(ConnectionStringError::UnknownPart { index: i + 1 }),
            };
            if slot.replace(value.trim()).is_some() {
                let what =
                    if name.trim().eq_ignore_ascii_case("endpoint") { "endpoint" } else { "accesskey" };
                return Err(ConnectionStringError::Duplicate(what));
            }
        }
        let endpoint =
            endpoint.filter(|e| !e.is_empty()).ok_or(ConnectionStringError::Missing("endpoint"))?;
        let key = key.filter(|k| !k.is_empty()).ok_or(ConnectionStringError::Missing("accesskey"))?;
        let key = decode_key(key)?;
        Ok(Self { endpoint: parse_endpoint(endpoint)?, key })
    }

    /// Reads the connection string from `ACS_CONNECTION_STRING`.
    pub fn from_env() -> Result<Self, ConnectionStringError> {
        match std::env::var_os(ENV_VAR) {
            None => Err(ConnectionStringError::NotSet),
            Some(value) => {
                let value = Zeroizing::new(value.into_string().map_err(|value| {
                    drop(Zeroizing::new(value.into_encoded_bytes()));
                    ConnectionStringError::NotUtf8 { from: ENV_VAR.into() }
                })?);
                Self::parse(&value)
            }
        }
    }

    /// Reads the connection string from a file (its first 64 KiB; surrounding whitespace and a
    /// final newline are fine).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConnectionStringError> {
        let path: PathBuf = path.as_ref().into();
        let from = path.display().to_string();
        let file = std::fs::File::open(&path)
            .map_err(|e| ConnectionStringError::Read { from: from.clone(), kind: e.kind() })?;
        Self::from_reader(file, &from)
    }

    /// Reads the connection string from standard input, to its end.
    pub fn from_stdin() -> Result<Self, ConnectionStringError> {
        Self::from_reader(std::io::stdin().lock(), "stdin")
    }

    /// Reads the connection string from `reader` (named `from` in errors), to its end.
    pub fn from_reader(reader: impl Read, from: &str) -> Result<Self, ConnectionStringError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(1024));
        reader
            .take(MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ConnectionStringError::Read { from: from.into(), kind: e.kind() })?;
        if bytes.len() as u64 > MAX_LEN {
            return Err(ConnectionStringError::TooLarge { from: from.into() });
        }
        let text =
            std::str::from_utf8(&bytes).map_err(|_| ConnectionStringError::NotUtf8 { from: from.into() })?;
        Self::parse(text)
    }

    /// The resource's endpoint.
    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    #[cfg(test)]
    pub(crate) fn key(&self) -> &AccessKey {
        &self.key
    }

    /// The key, for the client that signs with it.
    pub(crate) fn into_key(self) -> AccessKey {
        self.key
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint.as_str())
            .field("accesskey", &"[redacted]")
            .finish()
    }
}

/// Decodes the key into wiped memory (decoded in place: no intermediate copy is left behind).
fn decode_key(key: &str) -> Result<AccessKey, ConnectionStringError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut bytes = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(key.len())]);
    let n = engine.decode_slice(key, &mut bytes).map_err(|_| ConnectionStringError::KeyNotBase64)?;
    bytes.truncate(n);
    if bytes.is_empty() {
        return Err(ConnectionStringError::Missing("accesskey"));
    }
    Ok(AccessKey(bytes))
}

fn parse_endpoint(text: &str) -> Result<url::Url, ConnectionStringError> {
    let url = url::Url::parse(text).map_err(|_| ConnectionStringError::EndpointNotUrl)?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or(ConnectionStringError::EndpointNotUrl)?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConnectionStringError::EndpointExtras);
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => return Err(ConnectionStringError::PlainHttp { host: host.into() }),
        _ => return Err(ConnectionStringError::EndpointScheme),
    }
    Ok(url)
}

/// Whether `host` (as `url` writes it: IPv6 in brackets) is loopback.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw=="; // "secret-key-bytes"

    #[test]
    fn parts_in_any_order_and_case() {
        for text in [
            format!("endpoint=https://r.communication.azure.com/;accesskey={KEY}"),
            format!("AccessKey={KEY};Endpoint=https://r.communication.azure.com/;"),
            format!("  ENDPOINT = https://r.communication.azure.com/ ; accesskey={KEY} ;\n"),
            format!("endpoint=https://r.communication.azure.com/;accesskey={}", KEY.trim_end_matches('=')),
        ] {
            let cs = ConnectionString::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cs.endpoint().as_str(), "https://r.communication.azure.com/");
            assert_eq!(cs.key().bytes(), b"secret-key-bytes");
        }
    }

    #[test]
    fn loopback_may_be_plain_http() {
        for host in ["127.0.0.1:8080", "[::1]:9", "localhost", "127.1.2.3"] {
            let text = format!("endpoint=http://{host}/;accesskey={KEY}");
            assert!(ConnectionString::parse(&text).is_ok(), "{host}");
        }
    }

    #[test]
    fn errors_say_what_and_never_quote_the_key() {
        use ConnectionStringError as E;
        let cases = [
            (format!("accesskey={KEY}"), E::Missing("endpoint")),
            ("endpoint=https://r.communication.azure.com/".to_owned(), E::Missing("accesskey")),
            ("endpoint=https://r.communication.azure.com/;accesskey=".to_owned(), E::Missing("accesskey")),
            (format!("endpoint=https://r/;accesskey={KEY};{KEY}"), E::UnknownPart { index: 3 }),
            (format!("endpoint=https://r/;accesskey={KEY};secret"), E::NotNameValue { index: 3 }),
            (format!("endpoint=https://r/;accesskey={KEY};accesskey={KEY}"), E::Duplicate("accesskey")),
            ("endpoint=https://r/;accesskey=zz top!!".to_owned(), E::KeyNotBase64),
            (format!("endpoint={KEY};accesskey={KEY}"), E::EndpointNotUrl),
            (format!("endpoint=ftp://r/;accesskey={KEY}"), E::EndpointScheme),
            (
                format!("endpoint=http://r.communication.azure.com/;accesskey={KEY}"),
                E::PlainHttp { host: "r.communication.azure.com".into() },
            ),
            (format!("endpoint=http://10.0.0.1/;accesskey={KEY}"), E::PlainHttp { host: "10.0.0.1".into() }),
            (format!("endpoint=https://u:p@r/;accesskey={KEY}"), E::EndpointExtras),
            (format!("endpoint=https://r/?x={KEY};accesskey={KEY}"), E::EndpointExtras),
        ];
        for (text, expected) in cases {
            let e = ConnectionString::parse(&text).unwrap_err();
            assert_eq!(e, expected, "{text}");
            let shown = format!("{e} {e:?}");
            for secret in [KEY, KEY.trim_end_matches('='), "zz top", "secret-key"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn read_from_a_reader_bounded() {
        let text = format!("endpoint=https://r/;accesskey={KEY}\n");
        assert!(ConnectionString::from_reader(text.as_bytes(), "test").is_ok());
        let big = vec![b' '; (MAX_LEN + 1) as usize];
        assert_eq!(
            ConnectionString::from_reader(&big[..], "big").unwrap_err(),
            ConnectionStringError::TooLarge { from: "big".into() }
        );
        assert_eq!(
            ConnectionString::from_reader(&[0xff, 0xfe][..], "bin").unwrap_err(),
            ConnectionStringError::NotUtf8 { from: "bin".into() }
        );
        let e = ConnectionString::from_file("/nonexistent/cs").unwrap_err();
        assert_eq!(
            e,
            ConnectionStringError::Read {
                from: "/nonexistent/cs".into(),
                kind: std::io::ErrorKind::NotFound
            }
        );
    }

    #[test]
    fn debug_shows_the_endpoint_only() {
        let cs = ConnectionString::parse(&format!("endpoint=https://r/;accesskey={KEY}")).unwrap();
        assert_eq!(
            format!("{cs:?}"),
            r#"ConnectionString { endpoint: "https://r/", accesskey: "[redacted]" }"#
        );
    }
}
