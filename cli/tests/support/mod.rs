//! A stand-in for an ACS resource's identity API, on loopback, for the tests.
//!
//! It checks every request's signature with its own code, written from the ACS REST
//! "Authentication" page (not calling the client's signer, and on RustCrypto's `hmac`/`sha2`
//! where the client uses ring): the content hash against the body, then the HMAC-SHA256 over
//! `VERB\nPATH_AND_QUERY\n` and the values of the headers `SignedHeaders` names, `;`-joined.
//! It answers as the REST reference shows: 201 create, 200 issue, 204 delete, 404 an unknown
//! identity, 401 a bad signature, and whatever a test programs ahead (403, 429 with
//! `Retry-After`, 5xx, a malformed body). Its tokens are unsigned JWTs with the claims the
//! conformance suite gives the real SDK (which the SDK accepts locally).
#![allow(dead_code)] // each test binary uses part of it

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use callagent_retry::sdk::AccessToken;
use hmac::Mac as _;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub const RESOURCE: &str = "11111111-2222-3333-4444-555555555555";
pub const API_VERSION: &str = "api-version=2023-10-01";

/// One request as the stand-in received it, and what it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// Every header, in order, as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
    /// Why the signature was refused, if it was.
    pub refused: Option<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The request as raw HTTP/1.1 (its headers as sent, the length of `body`), to replay.
    pub fn raw(&self, body: &[u8]) -> Vec<u8> {
        let mut raw = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            let skip = ["content-length", "transfer-encoding", "connection"];
            if !skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        raw.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        raw
    }
}

/// An answer programmed ahead: the next request whose signature passes gets it instead.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Canned {
    /// `status` with the service's error body.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json!({"error": {"code": code, "message": message}}).to_string(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    identities: HashSet<String>,
    next: u64,
    canned: VecDeque<Canned>,
    log: Vec<Recorded>,
    tokens: Vec<String>,
}

/// The stand-in, serving until dropped (its task is aborted).
pub struct StandIn {
    pub addr: SocketAddr,
    /// The resource's access key, base64 (as in its connection string).
    pub key: String,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A file of `tests/fixtures/`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fresh 64-byte key, base64 (as ACS's are), different each run.
pub fn random_key() -> String {
    let mut seed = [0u8; 64];
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let mut h = sha2::Sha512::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()));
    seed.copy_from_slice(&h.finalize());
    B64.encode(seed)
}

impl StandIn {
    /// The stand-in on plain http.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// The stand-in on https, with the certificate `fixtures/{cert}.crt` (issued by
    /// `fixtures/ca.crt`; `standin` is for 127.0.0.1, `other` for another address).
    pub async fn start_tls(cert: &str) -> Self {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(fixture(&format!("{cert}.crt")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>();
        let key = PrivateKeyDer::from_pem_file(fixture(&format!("{cert}.key"))).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs.unwrap(), key)
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = random_key();
        let state = Arc::new(Mutex::new(State::default()));
        let (k, s) = (B64.decode(&key).unwrap(), Arc::clone(&state));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (k, s, tls) = (k.clone(), Arc::clone(&s), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (k, s) = (k.clone(), Arc::clone(&s));
                        async move { Ok::<_, Infallible>(handle(&k, addr, &s, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await,
                        Some(tls) => {
                            let Ok(tcp) = tls.accept(tcp).await else { return };
                            http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await
                        }
                    };
                });
            }
        });
        Self { addr, key, scheme, state, task }
    }

    /// `endpoint=http(s)://127.0.0.1:PORT/;accesskey=KEY`.
    pub fn connection_string(&self) -> String {
        format!("endpoint={}://{}/;accesskey={}", self.scheme, self.addr, self.key)
    }

    /// The next `n` requests that pass the signature check get `answer`.
    pub fn program(&self, answer: Canned, n: usize) {
        let mut state = self.state.lock().unwrap();
        state.canned.extend(std::iter::repeat_n(answer, n));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// Every token it issued.
    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }

    pub fn identities(&self) -> HashSet<String> {
        self.state.lock().unwrap().identities.clone()
    }
}

fn answer(status: u16, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    if body.is_some() {
        response = response.header("content-type", "application/json; charset=utf-8");
    }
    response.body(Full::new(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())))).unwrap()
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    answer(status, Some(json!({"error": {"code": code, "message": message}})))
}

async fn handle(
    key: &[u8],
    addr: SocketAddr,
    state: &Mutex<State>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_owned());
    let mut recorded = Recorded {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.clone(),
        status: 0,
        refused: None,
    };
    let response = match verify(key, &format!("{addr}"), &recorded) {
        Err(why) => {
            recorded.refused = Some(why.clone());
            error(401, "Denied", &format!("Denied by the stand-in: {why}"))
        }
        Ok(()) => {
            let canned = state.lock().unwrap().canned.pop_front();
            match canned {
                Some(c) => {
                    let mut r = Response::builder().status(c.status);
                    for (n, v) in &c.headers {
                        r = r.header(*n, v);
                    }
                    r.body(Full::new(Bytes::from(c.body))).unwrap()
                }
                None => route(state, &parts.method, &target, &body),
            }
        }
    };
    recorded.status = response.status().as_u16();
    state.lock().unwrap().log.push(recorded);
    response
}

/// The ACS REST authentication check, from the spec.
fn verify(key: &[u8], authority: &str, r: &Recorded) -> Result<(), String> {
    let host = r.header("host").ok_or("no Host header")?;
    if host != authority {
        return Err(format!("Host {host:?} is not this service's {authority:?}"));
    }
    let date = r.header("x-ms-date").ok_or("no x-ms-date header")?;
    let sent = httpdate::parse_http_date(date).map_err(|_| "x-ms-date is not an RFC 1123 date")?;
    let skew = sent.duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(15 * 60) {
        return Err("x-ms-date is more than 15 minutes off".into());
    }
    let hash = r.header("x-ms-content-sha256").ok_or("no x-ms-content-sha256 header")?;
    if hash != B64.encode(sha2::Sha256::digest(&r.body)) {
        return Err("x-ms-content-sha256 is not the body's SHA-256".into());
    }
    let auth = r.header("authorization").ok_or("no Authorization header")?;
    let params = auth.strip_prefix("HMAC-SHA256 ").ok_or("Authorization is not HMAC-SHA256")?;
    let (mut signed_headers, mut signature) = (None, None);
    for param in params.split('&') {
        match param.split_once('=') {
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err("Authorization has a parameter that is not SignedHeaders or Signature".into()),
        }
    }
    let signed_headers = signed_headers.ok_or("no SignedHeaders")?;
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["x-ms-date", "host", "x-ms-content-sha256"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(required)) {
            return Err(format!("SignedHeaders leaves out {required}"));
        }
    }
    let values: Vec<&str> = names
        .iter()
        .map(|n| r.header(n).ok_or(format!("signed header {n} not sent")))
        .collect::<Result<_, _>>()?;
    let to_sign = format!("{}\n{}\n{}", r.method, r.target, values.join(";"));
    let signature = B64.decode(signature.ok_or("no Signature")?).map_err(|_| "Signature is not base64")?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&signature).map_err(|_| "the signature does not match".to_owned())
}

/// The identity API's answers to a request whose signature passed.
fn route(state: &Mutex<State>, method: &hyper::Method, target: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query != API_VERSION {
        return error(400, "InvalidApiVersion", "this stand-in speaks api-version=2023-10-01 only");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let request: Value =
        if body.is_empty() { json!({}) } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
    let mut state = state.lock().unwrap();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["identities"]) => {
            let Some((scopes, minutes)) = scopes_and_minutes(&request, "createTokenWithScopes") else {
                return error(400, "ValidationError", "createTokenWithScopes or expiresInMinutes is invalid");
            };
            state.next += 1;
            let id = format!("8:acs:{RESOURCE}_{:08x}-0000-0000-0000-{:012}", std::process::id(), state.next);
            state.identities.insert(id.clone());
            let mut created = json!({"identity": {"id": id}});
            if !scopes.is_empty() {
                let (token, expires_on) = mint(&id, &scopes, minutes);
                state.tokens.push(token.clone());
                created["accessToken"] = json!({"token": token, "expiresOn": expires_on});
            }
            answer(201, Some(created))
        }
        ("POST", ["identities", id, ":issueAccessToken"]) => {
            let id = decode(id);
            if !state.identities.contains(&id) {
                return error(404, "IdentityNotFound", "Identity not found.");
            }
            let Some((scopes, minutes)) = scopes_and_minutes(&request, "scopes") else {
                return error(400, "ValidationError", "scopes or expiresInMinutes is invalid");
            };
            if scopes.is_empty() {
                return error(400, "ValidationError", "scopes is empty");
            }
            let (token, expires_on) = mint(&id, &scopes, minutes);
            state.tokens.push(token.clone());
            answer(200, Some(json!({"token": token, "expiresOn": expires_on})))
        }
        ("DELETE", ["identities", id]) => {
            if state.identities.remove(&decode(id)) {
                answer(204, None)
            } else {
                error(404, "IdentityNotFound", "Identity not found.")
            }
        }
        _ => error(404, "NotFound", "no such resource"),
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// The scopes under `field` and `expiresInMinutes` (60..=1440, default 1440).
fn scopes_and_minutes(request: &Value, field: &str) -> Option<(Vec<String>, u64)> {
    let scopes = match request.get(field) {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            items.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?
        }
        Some(_) => return None,
    };
    let minutes = match request.get("expiresInMinutes") {
        None => 1440,
        Some(m) => m.as_u64().filter(|m| (60..=1440).contains(m))?,
    };
    Some((scopes, minutes))
}

/// A token as the conformance suite crafts them (the SDK accepts it locally), and its expiry as
/// the service writes it (`2023-10-10T21:39:39.0000000+00:00`).
fn mint(id: &str, scopes: &[String], minutes: u64) -> (String, String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = now + minutes * 60;
    let claims = json!({
        "skypeid": id.strip_prefix("8:").unwrap_or(id), "scp": 1792, "csi": now, "iat": now, "exp": exp,
        "acsScope": scopes.join(","), "resourceId": RESOURCE, "resourceLocation": "unitedstates",
    });
    let token = AccessToken::unsigned(&claims).expose_secret().to_owned();
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp)).to_string();
    (token, at.replace('Z', ".0000000+00:00"))
}

/// Sends `raw` bytes to `addr` and reads the answer's status.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text}"))
}

/// A port on loopback where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
