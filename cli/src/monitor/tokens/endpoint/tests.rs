//! The token endpoint against a loopback stand-in (a hyper server) that checks the header and
//! answers, or answers what a test programs ahead.
//!
//! Over 500 lines: the stand-in (about 150 lines) and a test per failure the endpoint can have.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use callagent_retry::sdk::AccessToken;
use http_body_util::Full;
use hyper::{Request, Response};

use super::*;
use crate::monitor::tokens::{TokenFailure, Tokens};

/// A header value as a real one looks, different each run.
fn secret_value() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("Bearer hdr-s3cr3t-{nanos:09}-{}", std::process::id())
}

fn jwt(identity: &str, exp: u64) -> AccessToken {
    AccessToken::unsigned(&serde_json::json!({"skypeid": identity.trim_start_matches("8:"), "exp": exp}))
}

fn in_two_hours() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 7200
}

/// An answer programmed ahead.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Canned {
    fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new() }
    }

    fn body(status: u16, body: impl Into<String>) -> Self {
        Self { status, headers: Vec::new(), body: body.into() }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    canned: VecDeque<Canned>,
    /// Each request's target and the header's value, as received.
    requests: Vec<(String, Option<String>)>,
    tokens: Vec<String>,
}

/// The stand-in token endpoint: `GET /tokens/{identity}` with the header `x-token-key` (or
/// `authorization`) equal to its value answers 200 `{token, expiresOn}`; a wrong or missing
/// header, 401.
struct TokenServer {
    addr: SocketAddr,
    header: &'static str,
    value: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TokenServer {
    async fn start(header: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let value = secret_value();
        let state = Arc::new(Mutex::new(State::default()));
        let (s, v) = (Arc::clone(&state), value.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (s, v, tls) = (Arc::clone(&s), v.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (s, v) = (Arc::clone(&s), v.clone());
                        async move { Ok::<_, Infallible>(handle(header, &v, &s, &req)) }
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
        let dir =
            std::env::temp_dir().join(format!("callagent-endpoint-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { addr, header, value, state, task, dir }
    }

    async fn plain() -> Self {
        Self::start("x-token-key", None).await
    }

    /// `[token]` for this server: the header's value in a file (with a trailing newline, as
    /// Kubernetes writes a Secret's).
    fn config(&self, extra: &str) -> TokenConfig {
        let file = self.dir.join("header-value");
        std::fs::write(&file, format!("{}\n", self.value)).unwrap();
        let scheme = if extra.contains("ca_file") { "https" } else { "http" };
        let text = format!(
            "source = \"endpoint\"\nurl = \"{scheme}://{}/tokens/{{identity}}?v=1\"\nheader_name = \"{}\"\n\
             header_value_file = \"{}\"\nrequest_timeout = \"2s\"\n{extra}",
            self.addr,
            self.header,
            file.display()
        );
        toml::from_str(&text).unwrap()
    }

    fn endpoint(&self, extra: &str) -> Endpoint {
        Endpoint::new(&self.config(extra)).unwrap()
    }

    fn program(&self, answer: Canned, n: usize) {
        self.state.lock().unwrap().canned.extend(std::iter::repeat_n(answer, n));
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }
}

fn handle(
    header: &str,
    value: &str,
    state: &Mutex<State>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let sent = req.headers().get(header).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut state = state.lock().unwrap();
    state.requests.push((target.clone(), sent.clone()));
    let reply = |status: u16, body: String| {
        Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
    };
    if sent.as_deref() != Some(value) || req.method() != hyper::Method::GET {
        return reply(401, "{\"error\": \"who are you?\"}".into());
    }
    if let Some(c) = state.canned.pop_front() {
        let mut r = Response::builder().status(c.status);
        for (n, v) in &c.headers {
            r = r.header(*n, v);
        }
        return r.body(Full::new(Bytes::from(c.body))).unwrap();
    }
    let Some(encoded) = target.strip_prefix("/tokens/").and_then(|t| t.strip_suffix("?v=1")) else {
        return reply(404, String::new());
    };
    let identity = percent_encoding::percent_decode_str(encoded).decode_utf8_lossy().into_owned();
    let exp = in_two_hours();
    let token = jwt(&identity, exp);
    state.tokens.push(token.expose_secret().to_owned());
    let expires = humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(exp));
    reply(
        200,
        serde_json::json!({"token": token.expose_secret(), "expiresOn": expires.to_string()}).to_string(),
    )
}

fn fixture(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// TLS with `fixtures/standin.crt` (for 127.0.0.1, issued by `fixtures/ca.crt`).
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(fixture("standin.crt")).unwrap().collect::<Result<Vec<_>, _>>();
    let key = PrivateKeyDer::from_pem_file(fixture("standin.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.unwrap(), key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// What no error or `Debug` may show: the header's value, and every token served.
fn assert_shows_no_secret(server: &TokenServer, shown: &str) {
    assert!(!shown.contains(&server.value), "the header value is shown: {shown}");
    assert!(!shown.contains("hdr-s3cr3t"), "the header value is shown: {shown}");
    for token in server.tokens() {
        assert!(!shown.contains(&token), "a token is shown: {shown}");
    }
}

#[tokio::test]
async fn a_good_answer_is_cached_and_the_header_and_identity_are_sent() {
    let server = TokenServer::plain().await;
    let tokens = Tokens::new(&server.config(""), None);
    let token = tokens.token("8:acs:r_1").await.unwrap();
    assert_eq!(server.tokens(), [token.expose_secret()]);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/tokens/8%3Aacs%3Ar_1?v=1", "the identity percent-encoded");
    assert_eq!(requests[0].1.as_deref(), Some(server.value.as_str()), "the value trimmed of its newline");

    let again = tokens.token("8:acs:r_1").await.unwrap();
    assert_eq!(again.expose_secret(), token.expose_secret());
    assert_eq!(server.requests().len(), 1, "cached: no second request");
    tokens.token("8:acs:r_2").await.unwrap();
    assert_eq!(server.requests().len(), 2, "another identity, another token");
    tokens.forget("8:acs:r_1");
    tokens.token("8:acs:r_1").await.unwrap();
    assert_eq!(server.requests().len(), 3, "fetched again once forgotten");
    assert_shows_no_secret(&server, &format!("{tokens:?} {:?}", server.endpoint("")));
}

#[tokio::test]
async fn without_expires_on_the_tokens_exp_counts() {
    let server = TokenServer::plain().await;
    let t = jwt("8:acs:r_1", 2_000_000_000);
    server.program(Canned::body(200, format!("{{\"token\": \"{}\"}}", t.expose_secret())), 1);
    let (token, expires) = server.endpoint("").fetch("8:acs:r_1").await.unwrap();
    assert_eq!(token.expose_secret(), t.expose_secret());
    assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let offset =
        format!("{{\"token\": \"{}\", \"expiresOn\": \"2033-05-18T05:33:20.5+02:00\"}}", t.expose_secret());
    server.program(Canned::body(200, offset), 1);
    let (_, expires) = server.endpoint("").fetch("8:acs:r_1").await.unwrap();
    assert_eq!(expires, UNIX_EPOCH + Duration::from_millis(2_000_000_000_500));
}

#[tokio::test]
async fn refusals_say_the_header_value_was_refused() {
    let server = TokenServer::plain().await;
    let mut config = server.config("");
    let wrong = server.dir.join("wrong");
    std::fs::write(&wrong, "Bearer not-the-value").unwrap();
    config.header_value_file = Some(wrong);
    let err = Endpoint::new(&config).unwrap().fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Refused { status: 401, header: "x-token-key".into() });
    assert!(err.to_string().contains("`token.header_value_file`"), "{err}");
    assert!(!err.to_string().contains("not-the-value"), "{err}");
    server.program(Canned::status(403), 1);
    let err = server.endpoint("").fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Refused { status: 403, header: "x-token-key".into() });
    assert_eq!(server.requests().len(), 2, "not retried");
    assert_shows_no_secret(&server, &format!("{err} {err:?}"));
}

#[tokio::test]
async fn not_found_server_errors_and_other_statuses() {
    let server = TokenServer::plain().await;
    let endpoint = server.endpoint("");
    server.program(Canned::status(404), 1);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(
        err,
        EndpointError::NotFound { host: server.addr.to_string(), path: "/tokens/8%3Aacs%3Ar_1".into() }
    );
    assert!(!err.to_string().contains("v=1"), "the query is not shown: {err}");
    server.program(Canned::body(500, "{\"error\": \"boom\"}"), 1);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Server { status: 500, attempts: 1 });
    assert!(!err.to_string().contains("boom"), "the body is not quoted: {err}");
    server.program(Canned::status(302).with_header("location", "https://example.com/"), 1);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::UnexpectedStatus { status: 302 });
    assert_eq!(server.requests().len(), 3, "none retried, no redirect followed");
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after_on_tokios_clock() {
    let server = TokenServer::plain().await;
    let endpoint = server.endpoint("");
    server.program(Canned::status(429).with_header("retry-after", "7"), 1);
    let started = tokio::time::Instant::now();
    let (token, _) = endpoint.fetch("8:acs:r_1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(7), "waited {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8), "waited {:?}", started.elapsed());
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.tokens(), [token.expose_secret()]);

    // Asking for more than `max_retry_wait` ends it at once; so does every retry spent.
    server.program(Canned::status(429).with_header("retry-after", "120"), 1);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Throttled { attempts: 1, retry_after: Some(Duration::from_secs(120)) });
    assert!(err.to_string().contains("after 1 attempt(s) (it last asked to wait 2m)"), "{err}");
    server.program(Canned::status(429).with_header("retry-after", "1"), 3);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Throttled { attempts: 3, retry_after: Some(Duration::from_secs(1)) });
    server.program(Canned::status(503), 3);
    let started = tokio::time::Instant::now();
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Server { status: 503, attempts: 3 });
    assert!(started.elapsed() >= Duration::from_secs(3), "1 s then 2 s without Retry-After");
    assert_eq!(server.requests().len(), 2 + 1 + 3 + 3);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = TokenServer::plain().await;
    let mut config = server.config("");
    config.url = Some(format!("http://127.0.0.1:{port}/tokens/{{identity}}"));
    let err = Endpoint::new(&config).unwrap().fetch("8:acs:r_1").await.unwrap_err();
    let EndpointError::Unreachable { host, cause } = &err else { panic!("{err:?}") };
    assert_eq!(host, &format!("127.0.0.1:{port}"));
    assert!(cause.contains("cannot connect"), "{cause}");
    assert!(err.to_string().contains("check `token.url`"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_is_unreachable_within_the_timeout() {
    // Accepts connections (the backlog), never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TokenServer::plain().await;
    let mut config = server.config("");
    config.url = Some(format!("http://{}/tokens/{{identity}}", silent.local_addr().unwrap()));
    let started = tokio::time::Instant::now();
    let err = Endpoint::new(&config).unwrap().fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2), "bounded by request_timeout");
    let EndpointError::Unreachable { cause, .. } = &err else { panic!("{err:?}") };
    assert_eq!(cause, "no answer within 2s");
    drop(silent);
}

#[tokio::test]
async fn malformed_answers() {
    let server = TokenServer::plain().await;
    let endpoint = server.endpoint("");
    let no_exp = AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_1"}));
    for (body, what) in [
        ("{\"token\": \"a.b.c\", ".to_owned(), "not a JSON object with a `token` string"),
        ("<html>hello</html>".to_owned(), "not a JSON object with a `token` string"),
        ("{\"accessToken\": \"x\"}".to_owned(), "not a JSON object with a `token` string"),
        ("{\"token\": \"\"}".to_owned(), "the `token` is empty"),
        ("{\"token\": \"a.b.c\", \"expiresOn\": \"soon\"}".to_owned(), "`expiresOn` is not an RFC 3339 time"),
        (
            format!("{{\"token\": \"{}\"}}", no_exp.expose_secret()),
            "no `expiresOn`, and the token has no `exp` claim",
        ),
    ] {
        server.program(Canned::body(200, body.clone()), 1);
        let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
        assert_eq!(err, EndpointError::Malformed { status: 200, what: what.into() }, "{body}");
        assert!(!err.to_string().contains(no_exp.expose_secret()), "{err}");
    }
    server.program(Canned::body(200, "x".repeat(crate::transport::MAX_ANSWER + 1)), 1);
    let err = endpoint.fetch("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, EndpointError::Malformed { status: 200, what: "larger than 1 MiB".into() });
}

#[tokio::test]
async fn over_tls_verified_against_the_ca_file() {
    let server = TokenServer::start("authorization", Some(tls_acceptor())).await;
    let trusted = format!("ca_file = \"{}\"\n", fixture("ca.crt").display());
    let (token, _) = server.endpoint(&trusted).fetch("8:acs:r_1").await.unwrap();
    assert_eq!(server.tokens(), [token.expose_secret()]);
    let untrusted = format!("ca_file = \"{}\"\n", fixture("other.crt").display());
    let err = server.endpoint(&untrusted).fetch("8:acs:r_1").await.unwrap_err();
    assert!(matches!(err, EndpointError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("`token.ca_file`"), "{err}");
}

#[tokio::test]
async fn a_failure_is_a_token_failure_and_setup_failures_are_too() {
    let server = TokenServer::plain().await;
    server.program(Canned::status(500), 1);
    let tokens = Tokens::new(&server.config(""), None);
    let err = tokens.token("8:acs:r_1").await.unwrap_err();
    assert_eq!(err, TokenFailure::Endpoint(EndpointError::Server { status: 500, attempts: 1 }));
    assert!(err.to_string().starts_with("the token endpoint failed (500"), "{err}");
    // The file gone after the config check: every fetch says why, none panics.
    let mut config = server.config("");
    config.header_value_file = Some(server.dir.join("gone"));
    let err = Tokens::new(&config, None).token("8:acs:r_1").await.unwrap_err();
    let TokenFailure::Endpoint(EndpointError::Setup(why)) = &err else { panic!("{err:?}") };
    assert!(why.starts_with("`token.header_value_file` cannot read"), "{why}");
}

#[test]
fn urls_header_names_and_header_files() {
    assert_eq!(
        url_for("https://t.example/api/{identity}/token?for={identity}", "8:acs:a/b c").unwrap().as_str(),
        "https://t.example/api/8%3Aacs%3Aa%2Fb%20c/token?for=8%3Aacs%3Aa%2Fb%20c"
    );
    assert!(check_url("https://t.example/{identity}").is_ok());
    assert!(check_url("http://127.0.0.1:8080/{identity}").is_ok());
    assert!(check_url("http://[::1]/t").is_ok());
    for (bad, why) in [
        ("http://t.example/{identity}", "plain http is allowed to loopback only"),
        ("ftp://t.example/", "must be https"),
        ("https://user:pw@t.example/", "must not hold credentials"),
        ("https://{identity}.example/", "not its host"),
        ("t.example/token", "is not a URL"),
    ] {
        let err = check_url(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert_eq!(check_header_name("X-Functions-Key").unwrap().as_str(), "x-functions-key");
    assert!(check_header_name("Bad Header").is_err());
    assert!(check_header_name("Host").unwrap_err().contains("set by the monitor"));

    let dir = std::env::temp_dir().join(format!("callagent-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    assert_eq!(&*read_header_value(&file("ok", b"  Bearer abc\tdef \r\n")).unwrap(), b"Bearer abc\tdef");
    for (name, text, why) in [
        ("empty", &b" \n"[..], "is empty"),
        ("two-lines", b"Bearer abc\nsecond-s3cr3t", "control character"),
        ("big", &[b'a'; 70_000][..], "larger than 64 KiB"),
    ] {
        let err = read_header_value(&file(name, text)).unwrap_err();
        assert!(err.contains(why), "{name}: {err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
    assert!(read_header_value(&dir.join("missing")).unwrap_err().contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set in the child process [`no_header_value_or_token_in_any_log_record`] runs itself in.
const CHILD: &str = "CALLAGENT_TOKEN_ENDPOINT_LOG_CHILD";

/// TRACE, with the `log` crate's records forwarded (as `tracing_subscriber::fmt().init()` does
/// for users; rustls writes them), captured while tokens are fetched, throttled, refused, read
/// malformed and fetched over TLS: neither the header's value nor a token is in any record.
///
/// In a process of its own (this test binary run again for this test alone): the subscriber and
/// the `log` forwarding are process-wide, and tracing caches per process what each callsite
/// wants, so tests running beside it would blind it.
#[test]
fn no_header_value_or_token_in_any_log_record() {
    let name = "no_header_value_or_token_in_any_log_record";
    if std::env::var_os(CHILD).is_none() {
        let path = format!("{}::{name}", module_path!().split_once("::").unwrap().1);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &path, "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("test result: ok. 1 passed"), "the child ran no test:\n{stdout}");
        return;
    }
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    // `try_init` also installs the `log` → tracing forwarding (tracing-subscriber's default
    // `tracing-log` feature), as `fmt().init()` does.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();
    log::trace!("canary: a log record at TRACE");
    tracing::trace!("canary: a tracing event at TRACE");

    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    let (plain, tls, t) = runtime.block_on(async {
        let server = TokenServer::plain().await;
        let tokens = Tokens::new(&server.config(""), None);
        tokens.token("8:acs:r_1").await.unwrap();
        server.program(Canned::status(429).with_header("retry-after", "1"), 1);
        tokens.token("8:acs:r_2").await.unwrap();
        server.program(Canned::status(401), 1);
        tokens.token("8:acs:r_3").await.unwrap_err();
        let t = jwt("8:acs:r_4", 2_000_000_000);
        let body = format!("{{\"token\": \"{}\", \"expiresOn\": 5}}", t.expose_secret());
        server.program(Canned::body(200, body), 1);
        tokens.token("8:acs:r_4").await.unwrap_err();
        let tls = TokenServer::start("authorization", Some(tls_acceptor())).await;
        let trusted = format!("ca_file = \"{}\"\n", fixture("ca.crt").display());
        Tokens::new(&tls.config(&trusted), None).token("8:acs:r_5").await.unwrap();
        (server, tls, t)
    });

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("canary: a log record at TRACE"), "log records are forwarded: {log}");
    assert!(log.contains("canary: a tracing event at TRACE"), "{log}");
    assert!(log.contains("token endpoint request"), "the endpoint's own records are captured: {log}");
    assert!(log.contains("asked to come back later"), "{log}");
    assert!(log.contains("rustls"), "rustls's log records are captured: {log}");
    assert_eq!(plain.tokens().len(), 2);
    assert_eq!(tls.tokens().len(), 1);
    for server in [&plain, &tls] {
        assert_shows_no_secret(server, &log);
    }
    assert!(!log.contains(t.expose_secret()), "a token is in the log:\n{log}");
}

#[tokio::test]
async fn a_reload_reads_a_rotated_header_value_and_keeps_the_old_endpoint_when_it_cannot() {
    let server = TokenServer::plain().await;
    let config = server.config("");
    let file = config.header_value_file.clone().unwrap();
    // Running with a value the endpoint no longer takes: refused.
    std::fs::write(&file, "Bearer rotated-away\n").unwrap();
    let tokens = Tokens::new(&config, None);
    assert!(tokens.token("8:acs:r_1").await.is_err(), "the old value is refused");
    // The Secret is rotated; SIGHUP reads it again.
    std::fs::write(&file, format!("{}\n", server.value)).unwrap();
    tokens.reread(&config).unwrap();
    tokens.token("8:acs:r_1").await.expect("the rotated value is sent");
    assert_eq!(server.requests().last().unwrap().1.as_deref(), Some(server.value.as_str()));
    // A reload that cannot read the file keeps the endpoint it had, and says why.
    std::fs::remove_file(&file).unwrap();
    let e = tokens.reread(&config).expect_err("the file is gone");
    assert!(e.to_string().contains("header_value_file"), "{e}");
    tokens.forget("8:acs:r_1");
    tokens.token("8:acs:r_1").await.expect("the endpoint set up before still answers");
    assert_shows_no_secret(&server, &e.to_string());
}
