//! [`IdentityError`]: why a call to the identity API failed, and what to do.

use std::fmt;
use std::time::Duration;

use crate::transport::Wait;

/// What the service said in an error answer (`{"error":{"code","message"}}`), when it said it.
///
/// The message is the service's text, shortened to 300 characters, with any signature or
/// content hash of the request that drew it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The service's error code (`IdentityNotFound`, `Denied`, …).
    pub code: String,
    /// The service's message.
    pub message: String,
}

/// ` (the service said: CODE: message)`, or nothing.
pub(crate) struct Said<'a>(pub(crate) &'a Option<ServiceError>);

impl fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) if e.message.is_empty() => write!(f, "; the service said {}", e.code),
            Some(e) => write!(f, "; the service said {}: {}", e.code, e.message),
            None => Ok(()),
        }
    }
}

/// Why a call to the identity API failed. Each says what to do; none holds the access key, a
/// token, a signature or a header's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// 401: the signature was refused.
    #[error(
        "the identity API refused the access key (401 Unauthorized{}): use the resource's current \
         connection string (Azure portal → the Communication Services resource → Keys; a key \
         regenerated since is refused), and check this machine's clock (a request more than a few \
         minutes off is refused)",
        Said(service)
    )]
    Unauthorized {
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// 403: the key is valid but may not do this.
    #[error(
        "the identity API forbade the request (403 Forbidden{}): the key was accepted but may not \
         do this; check the resource's networking rules and that the endpoint and the key are of \
         the same resource",
        Said(service)
    )]
    Forbidden {
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// 404: no such identity (or no identity API at this endpoint).
    #[error(
        "{} (404 Not Found{}): {}",
        match id { Some(id) => format!("the resource has no identity {id}"), None => "the endpoint has no identity API".into() },
        Said(service),
        if id.is_some() {
            "check that the identity (8:acs:…) was created in this resource and not deleted since"
        } else {
            "check that the endpoint is the resource's own (https://NAME.communication.azure.com/)"
        }
    )]
    NotFound {
        /// The identity asked for, if the call named one.
        id: Option<String>,
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// 429 after every retry the client was allowed, or with a `Retry-After` longer than it may
    /// wait.
    #[error(
        "the identity API is throttling this resource (429 Too Many Requests) after {attempts} \
         attempt(s){}{}: \
         wait and run again, or make fewer identity requests on this resource",
        Wait(*retry_after),
        Said(service)
    )]
    Throttled {
        /// Requests sent.
        attempts: u32,
        /// The last `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// 5xx: a fault on the service's side (a 503 after every retry the client was allowed).
    #[error(
        "the identity API failed ({status} after {attempts} attempt(s){}): a fault on Azure's side; \
         run again later, and see https://azure.status.microsoft/ if it persists",
        Said(service)
    )]
    Server {
        /// The status.
        status: u16,
        /// Requests sent.
        attempts: u32,
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// 400: the service found the request invalid.
    #[error("the identity API refused the request as invalid (400 Bad Request{})", Said(service))]
    BadRequest {
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// A status the API does not document for this call.
    #[error("the identity API answered {status}, which this client does not expect{}", Said(service))]
    UnexpectedStatus {
        /// The status.
        status: u16,
        /// What the service said.
        service: Option<ServiceError>,
    },
    /// No connection, or no answer in time.
    #[error(
        "cannot reach the identity API at {host}: {cause}; check the endpoint's name, and that this \
         machine can reach it (DNS, a proxy or a firewall in between)"
    )]
    Unreachable {
        /// The endpoint's host and port.
        host: String,
        /// What failed.
        cause: String,
    },
    /// The TLS handshake failed (the certificate is checked, always).
    #[error(
        "the TLS handshake with {host} failed: {cause}; the endpoint's certificate must be valid for \
         its name and issued by a CA this system trusts (or one in the CA file given)"
    )]
    Tls {
        /// The endpoint's host and port.
        host: String,
        /// What failed.
        cause: String,
    },
    /// An answer that does not parse as the API's.
    #[error(
        "the identity API's answer ({status}) could not be read: {what}; check that the endpoint \
         is a Communication Services resource"
    )]
    Malformed {
        /// The status.
        status: u16,
        /// What is wrong with it (never its content).
        what: String,
    },
    /// An argument the API would refuse, refused before sending.
    #[error("{0}")]
    InvalidArgument(String),
    /// The client could not be set up (TLS roots, the CA file).
    #[error("cannot set up the identity client: {0}")]
    Setup(String),
}

impl IdentityError {
    /// What the service said, if the error came with an answer that said it.
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Self::Unauthorized { service }
            | Self::Forbidden { service }
            | Self::NotFound { service, .. }
            | Self::Throttled { service, .. }
            | Self::Server { service, .. }
            | Self::BadRequest { service }
            | Self::UnexpectedStatus { service, .. } => service.as_ref(),
            _ => None,
        }
    }
}
