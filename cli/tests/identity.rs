//! The identity client against the stand-in identity service (`support/`): each call's happy
//! path, every error kind, `Retry-After` on tokio's paused clock, an unreachable endpoint
//! bounded; and the proof that the stand-in's signature check is Microsoft's algorithm:
//! Microsoft's own client (`@azure/communication-identity`, in `tests/ms-identity/`) signs
//! requests it accepts, and one byte changed in a body it signed is refused.

mod support;

use std::time::{Duration, SystemTime};

use callagent_cli::identity::{ConnectionString, IdentityClient, IdentityError, Scope};
use support::{Canned, StandIn};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

fn client(standin: &StandIn) -> IdentityClient {
    IdentityClient::new(standin.connection_string().parse().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn create_issue_delete() {
    let standin = StandIn::start().await;
    let client = client(&standin);

    let created = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap();
    assert!(created.id.starts_with("8:acs:"), "{}", created.id);
    let claims = created.token.claims().unwrap();
    assert_eq!(claims.skypeid(), created.id.strip_prefix("8:"));
    assert_eq!(claims.acs_scope(), Some(&serde_json::json!("voip")));
    assert!(claims.has_resource_id());
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(claims.exp().unwrap());
    assert_eq!(created.expires_on, exp, "expiresOn is the token's exp");
    assert!(created.expires_on > SystemTime::now() + HOUR - Duration::from_secs(60));

    let issued = client.issue_token(&created.id, &[Scope::Voip, Scope::Chat], 2 * HOUR).await.unwrap();
    let claims = issued.token.claims().unwrap();
    assert_eq!(claims.skypeid(), created.id.strip_prefix("8:"));
    assert_eq!(claims.acs_scope(), Some(&serde_json::json!("voip,chat")));
    assert!(issued.expires_on > created.expires_on);

    client.delete_identity(&created.id).await.unwrap();
    assert!(standin.identities().is_empty());

    let requests = standin.requests();
    let seen: Vec<_> = requests.iter().map(|r| (r.method.as_str(), r.status, r.refused.as_deref())).collect();
    assert_eq!(seen, [("POST", 201, None), ("POST", 200, None), ("DELETE", 204, None)]);
    let encoded = created.id.replace(':', "%3A");
    assert_eq!(requests[0].target, "/identities?api-version=2023-10-01");
    assert_eq!(requests[1].target, format!("/identities/{encoded}/:issueAccessToken?api-version=2023-10-01"));
    assert_eq!(requests[2].target, format!("/identities/{encoded}?api-version=2023-10-01"));
    assert_eq!(
        requests[0].header("host"),
        Some(standin.addr.to_string().as_str()),
        "the port is in the host"
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"createTokenWithScopes": ["voip"], "expiresInMinutes": 60}));
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body, serde_json::json!({"scopes": ["voip", "chat"], "expiresInMinutes": 120}));
    assert!(requests[2].body.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unknown_identity_is_not_found() {
    let standin = StandIn::start().await;
    let client = client(&standin);
    let unknown = format!("8:acs:{}_00000000-0000-0000-0000-000000000000", support::RESOURCE);

    let e = client.issue_token(&unknown, &[Scope::Voip], HOUR).await.unwrap_err();
    let IdentityError::NotFound { id, service } = &e else { panic!("{e:?}") };
    assert_eq!(id.as_deref(), Some(unknown.as_str()));
    assert_eq!(service.as_ref().map(|s| s.code.as_str()), Some("IdentityNotFound"));
    let text = e.to_string();
    assert!(
        text.contains(&unknown)
            && text.contains("IdentityNotFound")
            && text.contains("created in this resource")
    );

    let e = client.delete_identity(&unknown).await.unwrap_err();
    assert!(matches!(e, IdentityError::NotFound { id: Some(_), .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_wrong_key_is_unauthorized() {
    let standin = StandIn::start().await;
    let wrong = format!("endpoint=http://{}/;accesskey={}", standin.addr, support::random_key());
    let client = IdentityClient::new(wrong.parse().unwrap()).unwrap();
    let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
    let IdentityError::Unauthorized { service: Some(service) } = &e else { panic!("{e:?}") };
    assert_eq!(service.code, "Denied");
    assert!(e.to_string().contains("Keys"), "{e}");
    assert_eq!(standin.requests()[0].refused.as_deref(), Some("the signature does not match"));
    assert!(standin.identities().is_empty(), "nothing was created");
}

#[tokio::test(start_paused = true)]
async fn each_refusal_is_its_kind() {
    let standin = StandIn::start().await;
    let client = client(&standin);
    let create = || client.create_identity_with_token(&[Scope::Voip], HOUR);

    standin.program(Canned::error(403, "Forbidden", "Public network access is disabled."), 1);
    let e = create().await.unwrap_err();
    assert!(matches!(&e, IdentityError::Forbidden { service: Some(s) } if s.code == "Forbidden"), "{e:?}");
    assert!(e.to_string().contains("networking rules"), "{e}");

    standin.program(Canned::error(500, "InternalError", "Something went wrong."), 1);
    let e = create().await.unwrap_err();
    assert!(matches!(&e, IdentityError::Server { status: 500, attempts: 1, service: Some(_) }), "{e:?}");
    assert!(e.to_string().contains("azure.status.microsoft"), "{e}");

    standin.program(Canned { status: 502, headers: vec![], body: "<html>bad gateway</html>".into() }, 1);
    let e = create().await.unwrap_err();
    assert!(matches!(&e, IdentityError::Server { status: 502, attempts: 1, service: None }), "{e:?}");

    standin.program(Canned::error(400, "ValidationError", "expiresInMinutes is out of range"), 1);
    let e = create().await.unwrap_err();
    assert!(
        matches!(&e, IdentityError::BadRequest { service: Some(s) } if s.code == "ValidationError"),
        "{e:?}"
    );

    standin.program(Canned { status: 418, headers: vec![], body: String::new() }, 1);
    let e = create().await.unwrap_err();
    assert!(matches!(&e, IdentityError::UnexpectedStatus { status: 418, service: None }), "{e:?}");

    assert_eq!(standin.requests().len(), 5, "none of these is retried");
    assert!(standin.identities().is_empty());
}

#[tokio::test(start_paused = true)]
async fn answers_that_do_not_parse_are_malformed() {
    let standin = StandIn::start().await;
    let client = client(&standin);
    let created = |body: &str| Canned { status: 201, headers: vec![], body: body.into() };
    for (body, what) in [
        ("<html>welcome</html>", "not JSON"),
        (r#"{"identity":{"id":"8:acs:x"}}"#, "no `accessToken.token` string"),
        (
            r#"{"identity":{},"accessToken":{"token":"a.b.c","expiresOn":"2030-01-01T00:00:00Z"}}"#,
            "no `identity.id`",
        ),
        (r#"{"identity":{"id":"8:acs:x"},"accessToken":{"token":"a.b.c","expiresOn":"soon"}}"#, "expiresOn"),
    ] {
        standin.program(created(body), 1);
        let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
        let IdentityError::Malformed { status: 201, what: w } = &e else { panic!("{body}: {e:?}") };
        assert!(w.contains(what), "{body}: {w}");
        assert!(!e.to_string().contains("a.b.c"), "{e}");
    }
    standin.program(Canned { status: 200, headers: vec![], body: r#"{"token": 5}"#.into() }, 1);
    let e = client.issue_token("8:acs:x", &[Scope::Voip], HOUR).await.unwrap_err();
    assert!(matches!(&e, IdentityError::Malformed { status: 200, .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn what_the_api_would_refuse_is_refused_before_sending() {
    let standin = StandIn::start().await;
    let client = client(&standin);
    for e in [
        client.create_identity_with_token(&[], HOUR).await.unwrap_err(),
        client.create_identity_with_token(&[Scope::Voip], Duration::from_secs(30 * 60)).await.unwrap_err(),
        client.issue_token("8:acs:x", &[Scope::Voip], 25 * HOUR).await.unwrap_err(),
        client.issue_token("", &[Scope::Voip], HOUR).await.unwrap_err(),
        client.delete_identity(" ").await.unwrap_err(),
    ] {
        assert!(matches!(e, IdentityError::InvalidArgument(_)), "{e:?}");
    }
    assert!(standin.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_on_tokios_clock() {
    let standin = StandIn::start().await;
    let client = client(&standin);
    standin.program(Canned::error(429, "TooManyRequests", "Rate limit").with_header("retry-after", "7"), 2);
    let started = Instant::now();
    let created = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(14) && waited < Duration::from_secs(15), "{waited:?}");
    let statuses: Vec<_> = standin.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 201]);
    assert!(standin.identities().contains(&created.id));

    // An HTTP date, and a 503 the same way.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    standin.program(Canned::error(503, "ServiceUnavailable", "Try later").with_header("retry-after", at), 1);
    let started = Instant::now();
    client.issue_token(&created.id, &[Scope::Voip], HOUR).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(28) && waited <= Duration::from_secs(31), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn throttling_ends_bounded() {
    let standin = StandIn::start().await;

    // Retries run out: 1 + 3 requests, the default waits of 1, 2 and 4 s between them.
    let client = client(&standin);
    standin.program(Canned::error(429, "TooManyRequests", "Rate limit"), 10);
    let started = Instant::now();
    let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    let IdentityError::Throttled { attempts: 4, retry_after: None, service: Some(s) } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(s.code, "TooManyRequests");
    assert!(e.to_string().contains("after 4 attempt(s)"), "{e}");
    assert_eq!(standin.requests().len(), 4);

    // A wait longer than the client may wait: no wait, no retry, the wait reported.
    let standin = StandIn::start().await;
    let client = IdentityClient::builder(standin.connection_string().parse().unwrap())
        .max_retry_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    standin
        .program(Canned::error(429, "TooManyRequests", "Rate limit").with_header("retry-after", "3600"), 1);
    let started = Instant::now();
    let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(
        matches!(e, IdentityError::Throttled { attempts: 1, retry_after: Some(d), .. } if d == HOUR),
        "{e:?}"
    );
    assert!(e.to_string().contains("it last asked to wait 1h"), "{e}");

    // No retries allowed; a 503 that stays.
    let client =
        IdentityClient::builder(standin.connection_string().parse().unwrap()).max_retries(0).build().unwrap();
    standin.program(
        Canned::error(503, "ServiceUnavailable", "Try later").with_header("retry-after-ms", "10"),
        1,
    );
    let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
    assert!(matches!(e, IdentityError::Server { status: 503, attempts: 1, .. }), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_is_bounded() {
    // Nothing listens: refused at once.
    let closed = support::closed_port().await;
    let cs: ConnectionString =
        format!("endpoint=http://{closed}/;accesskey={}", support::random_key()).parse().unwrap();
    let e = IdentityClient::new(cs).unwrap().delete_identity("8:acs:x").await.unwrap_err();
    let IdentityError::Unreachable { host, cause } = &e else { panic!("{e:?}") };
    assert_eq!(host, &closed.to_string());
    assert!(cause.contains("cannot connect"), "{cause}");

    // A listener that never answers: the timeout ends it, on tokio's clock (no real wait).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let cs: ConnectionString =
        format!("endpoint=http://{addr}/;accesskey={}", support::random_key()).parse().unwrap();
    let client = IdentityClient::builder(cs).timeout(Duration::from_secs(10)).build().unwrap();
    let (started, real) = (Instant::now(), std::time::Instant::now());
    let e = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(real.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&e, IdentityError::Unreachable { cause, .. } if cause == "no answer within 10s"),
        "{e:?}"
    );
    assert!(e.to_string().contains("firewall"), "{e}");
    drop(silent);
}

#[tokio::test(start_paused = true)]
async fn https_with_the_certificate_verified() {
    let standin = StandIn::start_tls("standin").await;
    let cs = || standin.connection_string().parse::<ConnectionString>().unwrap();
    assert!(standin.connection_string().starts_with("endpoint=https://127.0.0.1:"));

    // Trusted through the CA file: the calls go through, the port in the signed host.
    let client = IdentityClient::builder(cs()).ca_file(support::fixture("ca.crt")).build().unwrap();
    let created = client.create_identity_with_token(&[Scope::Voip], HOUR).await.unwrap();
    client.delete_identity(&created.id).await.unwrap();
    let statuses: Vec<_> = standin.requests().iter().map(|r| (r.status, r.refused.clone())).collect();
    assert_eq!(statuses, [(201, None), (204, None)]);

    // The system's roots alone do not know the test CA: refused, nothing sent.
    let e = IdentityClient::new(cs()).unwrap().delete_identity(&created.id).await.unwrap_err();
    let IdentityError::Tls { host, cause } = &e else { panic!("{e:?}") };
    assert_eq!(host, &standin.addr.to_string());
    assert!(cause.contains("UnknownIssuer"), "{cause}");
    assert!(e.to_string().contains("CA file"), "{e}");

    // A certificate the CA issued for another address: refused, nothing sent.
    let other = StandIn::start_tls("other").await;
    let client = IdentityClient::builder(other.connection_string().parse().unwrap())
        .ca_file(support::fixture("ca.crt"));
    let e = client.build().unwrap().delete_identity(&created.id).await.unwrap_err();
    assert!(matches!(&e, IdentityError::Tls { cause, .. } if cause.contains("not valid for name")), "{e:?}");
    assert!(other.requests().is_empty() && standin.requests().len() == 2);

    // A CA file that is not one.
    let e = IdentityClient::builder(cs()).ca_file(support::fixture("make.sh")).build().unwrap_err();
    assert!(matches!(&e, IdentityError::Setup(why) if why.contains("holds no certificate")), "{e:?}");
}

#[test]
fn a_malformed_connection_string_never_shows_its_key() {
    let key = support::random_key();
    let dir = std::env::temp_dir().join(format!("callagent-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for text in [
        format!("endpoint=https://r.communication.azure.com/;accesskey={key}!"),
        format!("endpoint={key};accesskey={key}"),
        format!("endpoint=http://r.communication.azure.com/;accesskey={key}"),
        format!("accesskey={key}"),
        format!("endpoint=https://r.communication.azure.com/;accesskey={key};{key}"),
        format!("endpoint=https://r.communication.azure.com/;{key}"),
        format!("endpoint=https://r.communication.azure.com/?{key};accesskey={key}"),
    ] {
        let file = dir.join("cs");
        std::fs::write(&file, &text).unwrap();
        for e in
            [ConnectionString::parse(&text).unwrap_err(), ConnectionString::from_file(&file).unwrap_err()]
        {
            let shown = format!("{e} {e:?}");
            for part in [&key[..], key.trim_end_matches('='), &key[..20], &key[key.len() - 20..]] {
                assert!(!shown.contains(part), "{shown}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Microsoft's client, under Node, against the stand-in: its requests are accepted, a wrong
/// key's refused, and a request it signed refused once one byte of its body is changed.
#[tokio::test]
#[ignore = "needs node and `npm ci` in cli/tests/ms-identity; .ci/run runs it"]
async fn microsofts_client_is_accepted_and_a_changed_body_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ms-identity");
    assert!(
        dir.join("node_modules/@azure/communication-identity").is_dir(),
        "run `npm ci` in {} first",
        dir.display()
    );
    let standin = StandIn::start().await;
    let wrong = format!("endpoint=http://{}/;accesskey={}", standin.addr, support::random_key());
    let output = tokio::process::Command::new("node")
        .arg("cross_check.mjs")
        .current_dir(&dir)
        .env("ACS_CONNECTION_STRING", standin.connection_string())
        .env("WRONG_CONNECTION_STRING", wrong)
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), output).await.expect("node ran within 60 s").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node failed: {stderr}");
    let said: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // What Microsoft's client sent, and what the stand-in made of it.
    let requests = standin.requests();
    let seen: Vec<_> = requests.iter().map(|r| (r.method.as_str(), r.status, r.refused.as_deref())).collect();
    assert_eq!(
        seen,
        [
            ("POST", 201, None),
            ("POST", 200, None),
            ("DELETE", 204, None),
            ("POST", 404, None),
            ("POST", 401, Some("the signature does not match")),
        ],
        "{said}"
    );
    for r in &requests {
        assert!(
            r.header("user-agent").is_some_and(|ua| ua.contains("azsdk-js-communication-identity")),
            "{r:?}"
        );
    }
    // Its client read the stand-in's answers as the service's.
    let tokens = standin.tokens();
    assert_eq!(said["created"]["token"].as_str(), Some(tokens[0].as_str()));
    assert_eq!(said["issued"]["token"].as_str(), Some(tokens[1].as_str()));
    assert!(said["created"]["id"].as_str().unwrap().starts_with("8:acs:"));
    assert_eq!(said["unknown"]["status"], 404);
    assert_eq!(said["wrongKey"]["status"], 401);

    // Replayed byte for byte, the create it signed is accepted; with one byte of the body
    // changed, refused, whether or not the content hash is recomputed to match.
    let create = &requests[0];
    assert!(!create.body.is_empty());
    assert_eq!(support::send_raw(standin.addr, &create.raw(&create.body)).await, 201);
    let mut changed = create.body.clone();
    let at = changed.iter().position(|&b| b == b'v').expect("the body names the voip scope");
    changed[at] = b'V';
    assert_eq!(support::send_raw(standin.addr, &create.raw(&changed)).await, 401);
    let mut rehashed = create.clone();
    let hash = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&changed))
    };
    for (name, value) in &mut rehashed.headers {
        if name.eq_ignore_ascii_case("x-ms-content-sha256") {
            *value = hash.clone();
        }
    }
    assert_eq!(support::send_raw(standin.addr, &rehashed.raw(&changed)).await, 401);
    let refusals: Vec<_> = standin.requests()[5..].iter().map(|r| r.refused.clone()).collect();
    assert_eq!(
        refusals,
        [
            None,
            Some("x-ms-content-sha256 is not the body's SHA-256".into()),
            Some("the signature does not match".into())
        ]
    );
}
