//! The access key, the tokens and the signatures appear in no log record at any level, no error
//! and no `Debug`: everything at TRACE (with the `log` crate's records forwarded, as
//! `tracing_subscriber::fmt().init()` does for users) is captured while the client creates,
//! issues, deletes, is throttled and refused, and searched.
//!
//! A test binary of its own: the subscriber and the `log` forwarding are process-wide.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use callagent_cli::identity::{IdentityClient, Scope};
use support::{Canned, StandIn};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_in_any_log_record_error_or_debug() {
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

    let standin = StandIn::start().await;
    let client = IdentityClient::new(standin.connection_string().parse().unwrap()).unwrap();
    let mut shown = vec![
        format!("{client:?}"),
        format!(
            "{:?}",
            standin.connection_string().parse::<callagent_cli::identity::ConnectionString>().unwrap()
        ),
    ];

    let created = client.create_identity_with_token(&[Scope::Voip], Duration::from_secs(3600)).await.unwrap();
    shown.push(format!("{created:?}"));
    standin.program(Canned::error(429, "TooManyRequests", "Rate limit").with_header("retry-after", "1"), 1);
    let issued = client.issue_token(&created.id, &[Scope::Voip], Duration::from_secs(3600)).await.unwrap();
    shown.push(format!("{issued:?}"));
    client.delete_identity(&created.id).await.unwrap();
    for e in [
        client.delete_identity(&created.id).await.unwrap_err(),
        {
            standin.program(Canned::error(500, "InternalError", "oops"), 1);
            client.create_identity_with_token(&[Scope::Voip], Duration::from_secs(3600)).await.unwrap_err()
        },
        {
            let wrong = format!("endpoint=http://{}/;accesskey={}", standin.addr, support::random_key());
            let wrong = IdentityClient::new(wrong.parse().unwrap()).unwrap();
            wrong.create_identity_with_token(&[Scope::Voip], Duration::from_secs(3600)).await.unwrap_err()
        },
    ] {
        shown.push(format!("{e} {e:?}"));
    }

    // Over TLS too (rustls writes `log` records of each handshake).
    let tls = StandIn::start_tls("standin").await;
    let client = IdentityClient::builder(tls.connection_string().parse().unwrap())
        .ca_file(support::fixture("ca.crt"))
        .build();
    let created = client.unwrap().create_identity_with_token(&[Scope::Voip], Duration::from_secs(3600)).await;
    shown.push(format!("{:?}", created.unwrap()));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("canary: a log record at TRACE"), "log records are forwarded: {log}");
    assert!(log.contains("canary: a tracing event at TRACE"));
    assert!(log.contains("identity API request"), "the client's own records are captured: {log}");

    // What must appear nowhere: the key (base64, padded or not, and its bytes as hex), every
    // token the stand-in issued, every signature and Authorization header the client sent.
    let mut secrets = Vec::new();
    for standin in [&standin, &tls] {
        let key_bytes = base64::engine::general_purpose::STANDARD.decode(&standin.key).unwrap();
        let hex: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
        secrets.extend([standin.key.clone(), standin.key.trim_end_matches('=').to_owned(), hex]);
        secrets.extend(standin.tokens());
        for r in standin.requests() {
            let auth = r.header("authorization").unwrap().to_owned();
            secrets.push(auth.split_once("Signature=").unwrap().1.to_owned());
            secrets.push(auth);
        }
    }
    assert!(log.contains("rustls"), "rustls's log records are captured: {log}");
    assert_eq!(tls.tokens().len(), 1);
    assert_eq!(standin.tokens().len(), 2);
    assert!(standin.requests().len() >= 6);
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log:\n{log}");
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret is shown: {text}");
        }
    }
}
