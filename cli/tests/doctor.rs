//! `callagent doctor` end to end: the binary, run as a user runs it, against the stand-in identity
//! service (`support`), with the real Web Calling SDK in Chromium for the `real_sdk_` tests.
//!
//! The `real_sdk_` tests need Chromium and the built page (`websdk/page/build.sh`), and must run
//! in a network namespace with loopback alone, as CI runs them:
//!
//! ```text
//! unshare -n sh -c 'ip link set lo up && exec "$@"' isolated \
//!   cargo test --offline -p callagent-cli --test doctor -- --ignored real_sdk_ --test-threads 1
//! ```
//!
//! The others need neither and run with `cargo test -p callagent-cli`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use callagent_retry::sdk::AccessToken;
use serde_json::{Value, json};
use support::StandIn;

/// A private directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let path =
            std::env::temp_dir().join(format!("callagent-doctor-{name}-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
        Self(path)
    }

    /// A file holding `text`, readable by its owner alone.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.0.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token with the claims the conformance suite gives the real SDK, changed by `change`.
fn token(change: impl FnOnce(&mut Value)) -> String {
    let mut claims = json!({
        "skypeid": format!("acs:{}_doctor", support::RESOURCE),
        "scp": 1792,
        "acsScope": "voip",
        "resourceId": support::RESOURCE,
        "exp": now() + 3600,
    });
    change(&mut claims);
    AccessToken::unsigned(&claims).expose_secret().to_owned()
}

/// Runs `callagent doctor ARGS` with `env` (and nothing of this process's ACS_ variables).
async fn doctor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_callagent"));
    cmd.arg("doctor").args(args).env_remove("ACS_TOKEN").env_remove("ACS_CONNECTION_STRING");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the doctor ends")
        .expect("it runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

fn step<'a>(report: &'a Value, stage: &str) -> &'a Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap_or(&Value::Null)
}

/// The built page, as the doctor finds it by default.
fn page_dir() -> PathBuf {
    std::env::var_os("CALLAGENT_WEBSDK_PAGE")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../websdk/page/dist"), PathBuf::from)
}

#[tokio::test]
async fn a_malformed_token_exits_3_and_touches_nothing() {
    let stand_in = StandIn::start().await;
    let dir = TempDir::new("malformed");
    for (name, body) in [("not-a-jwt", "not-a-jwt"), ("connection-string", &stand_in.connection_string())] {
        let path = dir.file(name, body);
        let out = doctor(
            &["--token-file", path.to_str().unwrap(), "--chromium", "/nonexistent/chromium"],
            &[("ACS_CONNECTION_STRING", &stand_in.connection_string())],
        )
        .await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("is not an access token"), "{err}");
        assert!(!err.contains(&stand_in.key), "the key is echoed: {err}");
        assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    }
    assert!(stand_in.requests().is_empty(), "the identity API was called");
}

#[tokio::test]
async fn a_malformed_connection_string_exits_3_without_echoing_the_key() {
    for bad in
        ["endpoint=https://x.communication.azure.com/;accesskey=!!not-base64-s3cr3t!!", "accesskey=c2VjcmV0"]
    {
        let out = doctor(&["--chromium", "/nonexistent/chromium"], &[("ACS_CONNECTION_STRING", bad)]).await;
        assert_eq!(out.status.code(), Some(3));
        let err = text(&out.stderr);
        assert!(err.contains("connection string"), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("c2VjcmV0"), "{err}");
    }
}

#[tokio::test]
async fn a_wrong_key_exits_3_with_what_to_do_and_starts_no_browser() {
    let stand_in = StandIn::start().await;
    let wrong = format!("endpoint=http://{}/;accesskey={}", stand_in.addr, support::random_key());
    let out =
        doctor(&["--json", "--chromium", "/nonexistent/chromium"], &[("ACS_CONNECTION_STRING", &wrong)])
            .await;
    assert_eq!(out.status.code(), Some(3));
    let report = json_of(&out);
    assert_eq!(report["verdict"], "could_not_run");
    let identity = step(&report, "identity");
    assert_eq!(identity["status"], "failed");
    assert!(identity["summary"].as_str().unwrap().contains("refused the access key"), "{identity}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 1, "nothing after the identity: {report}");
}

#[tokio::test]
async fn an_identity_that_does_not_exist_exits_3() {
    let stand_in = StandIn::start().await;
    let out = doctor(
        &["--identity", "8:acs:nobody", "--chromium", "/nonexistent/chromium"],
        &[("ACS_CONNECTION_STRING", &stand_in.connection_string())],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("has no identity 8:acs:nobody"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn no_chromium_exits_3_after_reading_the_token() {
    let dir = TempDir::new("no-chromium");
    let path = dir.file("token", &token(|_| {}));
    let out = doctor(
        &["--json", "--token-file", path.to_str().unwrap(), "--chromium", "/nonexistent/chromium"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let report = json_of(&out);
    assert_eq!(step(&report, "token")["status"], "ok");
    assert_eq!(step(&report, "token")["facts"]["local_checks"], "pass");
    // Every fact docs/doctor.md promises for the token step.
    for fact in ["identity", "resource", "scopes", "expires_at", "expires_in_s", "local_checks"] {
        assert!(step(&report, "token")["facts"].get(fact).is_some(), "token facts lack {fact}: {report:#}");
    }
    let browser = step(&report, "browser");
    assert_eq!(browser["status"], "failed");
    assert!(
        browser["summary"].as_str().unwrap().contains("no Chromium at /nonexistent/chromium"),
        "{browser}"
    );
    assert_eq!(step(&report, "creation")["status"], "skipped");
}

#[tokio::test]
async fn human_output_fits_80_columns_and_names_the_exit() {
    let dir = TempDir::new("human");
    let path = dir.file("token", &token(|c| c["acsScope"] = json!("chat")));
    let out =
        doctor(&["--token-file", path.to_str().unwrap(), "--chromium", "/nonexistent/chromium"], &[]).await;
    let stdout = text(&out.stdout);
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    assert!(!stdout.contains('\x1b'), "no colour off a terminal");
    assert!(stdout.contains("✗ token") && stdout.contains("401/44113"), "{stdout}");
    assert!(stdout.contains("exit 3 after"), "{stdout}");
}

#[tokio::test]
async fn an_endless_token_file_is_refused_not_read_forever() {
    let out = doctor(&["--token-file", "/dev/zero", "--chromium", "/nonexistent/chromium"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("more than 64 KiB"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn a_bad_argument_exits_3() {
    let out = doctor(&["--connect-timeout", "0s"], &[]).await;
    assert_eq!(out.status.code(), Some(3), "usage errors are the doctor's bad input, not clap's 2");
    assert!(text(&out.stderr).contains("must be more than zero"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_identity_the_doctor_created_is_deleted_even_when_the_browser_is_missing() {
    let stand_in = StandIn::start().await;
    let out = doctor(
        &["--json", "--chromium", "/nonexistent/chromium"],
        &[("ACS_CONNECTION_STRING", &stand_in.connection_string())],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let report = json_of(&out);
    assert_eq!(step(&report, "identity")["facts"]["created"], true, "{report:#}");
    assert_eq!(step(&report, "disposal")["facts"]["identity_deleted"], true, "{report:#}");
    assert!(stand_in.identities().is_empty(), "identities left: {:?}", stand_in.identities());
}

/// Every secret the run handled, to search its output for.
fn secrets(stand_in: &StandIn, extra: &[&str]) -> Vec<String> {
    let key = stand_in.key.clone();
    let raw = base64::engine::general_purpose::STANDARD.decode(&key).unwrap();
    let mut all = vec![key, String::from_utf8_lossy(&raw).into_owned()];
    all.extend(stand_in.tokens());
    all.extend(extra.iter().map(|s| (*s).to_owned()));
    // Each token's signature and payload on their own, too.
    for t in all.clone() {
        all.extend(t.split('.').skip(1).filter(|p| p.len() >= 8).map(str::to_owned));
    }
    all.retain(|s| s.len() >= 8);
    all
}

#[tokio::test]
#[ignore = "needs Chromium and the built page, in a loopback-only namespace; .ci/run runs it"]
async fn real_sdk_a_minted_token_makes_an_agent_that_never_connects() {
    let stand_in = StandIn::start().await;
    let page = page_dir();
    let out = doctor(
        &[
            "--json",
            "-vvv",
            "--attempts",
            "1",
            "--connect-timeout",
            "2s",
            "--no-external-hosts",
            "--page-dir",
            page.to_str().unwrap(),
        ],
        &[("ACS_CONNECTION_STRING", &stand_in.connection_string())],
    )
    .await;
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(2), "{report:#}");
    assert_eq!(report["verdict"], "not_fixed");
    let identity = step(&report, "identity");
    assert_eq!(identity["facts"]["created"], true);
    let id = identity["facts"]["identity"].as_str().unwrap().to_owned();
    assert_eq!(step(&report, "token")["status"], "ok", "{report:#}");
    assert_eq!(step(&report, "browser")["status"], "ok", "{report:#}");
    assert!(step(&report, "browser")["facts"]["sdk_version"].as_str().unwrap().contains('.'));
    let creation = step(&report, "creation");
    assert_eq!(creation["status"], "ok", "created, though it never connected: {report:#}");
    assert!(creation["facts"]["time_to_agent_ms"].as_u64().unwrap() > 0);
    for fact in ["chromium", "chromium_version", "sandbox", "page_dir", "sdk_version"] {
        assert!(step(&report, "browser")["facts"].get(fact).is_some(), "browser facts lack {fact}");
    }
    assert!(creation["facts"].get("attempts").is_some());
    let connection = step(&report, "connection");
    assert_eq!(connection["status"], "failed");
    assert_eq!(connection["facts"]["timeout_ms"], 2000);
    for fact in ["initial_state", "created_in_ms", "connected", "changes"] {
        assert!(connection["facts"]["agents"][0].get(fact).is_some(), "agent facts lack {fact}");
    }
    assert_eq!(connection["facts"]["connected"], false);
    assert_eq!(connection["facts"]["agents"][0]["initial_state"], "Disconnected");
    assert!(connection["remedy"].as_str().unwrap().contains("firewall"), "{connection}");
    // The hosts the page could not reach (the SDK's own, mapped away here), named in the remedy:
    // hosts alone, no path or query.
    let hosts = connection["facts"]["hosts"].as_array().expect("the page's hosts");
    assert!(!hosts.is_empty(), "the page saw the SDK's requests: {connection}");
    let remedy = connection["remedy"].as_str().unwrap();
    for host in hosts {
        let name = host["host"].as_str().unwrap();
        assert!(
            [".microsoft.com", ".skype.com", ".azure.com"].iter().any(|d| name.ends_with(d)),
            "one of the SDK's hosts: {name}"
        );
        assert!(!name.contains(['/', '?', '@']), "a host alone: {name}");
        assert_eq!(host["answered"], 0, "nothing answers here: {host}");
        assert!(host["failed"].as_u64().unwrap() > 0, "{host}");
        assert!(remedy.contains(name), "the remedy names {name}: {remedy}");
    }
    let disposal = step(&report, "disposal");
    assert_eq!(disposal["status"], "ok", "{disposal}");
    assert_eq!(disposal["facts"]["identity_deleted"], true);
    assert!(!stand_in.identities().contains(&id), "the identity the doctor created is deleted");
    assert!(stand_in.requests().iter().any(|r| r.method == "DELETE"), "a DELETE reached the identity API");
    // TRACE, with the `log` records of dependencies: no key, no token, no signature.
    let logs = text(&out.stderr);
    assert!(logs.contains("TRACE"), "TRACE was on: {}", &logs[..logs.len().min(2000)]);
    for secret in secrets(&stand_in, &[]) {
        assert!(!logs.contains(&secret), "a secret is in the logs");
        assert!(!text(&out.stdout).contains(&secret), "a secret is in the report");
    }
    assert!(!logs.contains("Signature="), "a signature is in the logs");
}

/// `--json` with a token file and the built page, offline: `attempts` creations, a 2 s connect
/// check.
fn token_file_args(token: &Path, page: &Path, attempts: &str) -> Vec<String> {
    let args = ["--json", "--attempts", attempts, "--connect-timeout", "2s", "--no-external-hosts"];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.extend(["--token-file".into(), token.display().to_string()]);
    args.extend(["--page-dir".into(), page.display().to_string()]);
    args
}

#[tokio::test]
#[ignore = "needs Chromium and the built page, in a loopback-only namespace; .ci/run runs it"]
async fn real_sdk_a_teams_users_token_with_teams_makes_a_teams_agent_that_never_connects() {
    let dir = TempDir::new("teams");
    let page = page_dir();
    let jwt = token(|c| {
        c["skypeid"] = json!("orgid:00000000-0000-0000-0000-000000000001");
        c["tid"] = json!("00000000-0000-0000-0000-000000000002");
    });
    let path = dir.file("teams.jwt", &jwt);
    let mut args = token_file_args(&path, &page, "1");
    args.push("--teams".into());
    let out = doctor(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    let report = json_of(&out);
    // The same token on an ACS agent is 40229 (below): here the SDK makes a TeamsCallAgent.
    assert_eq!(out.status.code(), Some(2), "{report:#}");
    assert_eq!(step(&report, "token")["status"], "ok", "{report:#}");
    assert_eq!(step(&report, "creation")["status"], "ok", "created, never connected: {report:#}");
    let connection = step(&report, "connection");
    assert_eq!(connection["status"], "failed", "{report:#}");
    assert_eq!(connection["facts"]["agents"][0]["initial_state"], "Disconnected");
    assert!(!text(&out.stdout).contains(&jwt) && !text(&out.stderr).contains(&jwt));
}

#[tokio::test]
#[ignore = "needs Chromium and the built page, in a loopback-only namespace; .ci/run runs it"]
async fn real_sdk_tokens_the_application_must_fix_exit_1_with_the_sdks_subcode_and_remedy() {
    let dir = TempDir::new("expected");
    let page = page_dir();
    // (what, the token, `--teams`, the subcode)
    let cases: [(&str, String, bool, u32); 4] = [
        ("expired", token(|c| c["exp"] = json!(now() - 600)), false, 40235),
        ("no voip", token(|c| c["acsScope"] = json!("chat")), false, 44113),
        // `--teams` makes a TeamsCallAgent: an ACS user's token is refused for it.
        ("ACS token, Teams agent", token(|_| {}), true, 40231),
        (
            "Teams token, ACS agent",
            token(|c| {
                c["skypeid"] = json!("orgid:00000000-0000-0000-0000-000000000001");
                c["tid"] = json!("00000000-0000-0000-0000-000000000002");
                c.as_object_mut().unwrap().remove("resourceId");
            }),
            false,
            40229,
        ),
    ];
    for (what, jwt, teams, sub_code) in cases {
        let path = dir.file(&what.replace([' ', ','], "-"), &jwt);
        let mut args = token_file_args(&path, &page, "2");
        args.push("-vvv".into());
        if teams {
            args.push("--teams".into());
        }
        let out = doctor(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
        let report = json_of(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {report:#}");
        assert_eq!(report["verdict"], "must_fix", "{what}");
        let token_step = step(&report, "token");
        assert_eq!(token_step["status"], "failed", "{what}: {report:#}");
        let remedy = callagent_retry::sdk::catalog::lookup(sub_code).unwrap().remedy;
        assert_eq!(token_step["remedy"], remedy, "{what}");
        let creation = step(&report, "creation");
        if sub_code == 40235 {
            // SDK 2.0.0 does not check expiry: the doctor does not create with an expired token.
            assert_eq!(creation["status"], "skipped", "{what}: {report:#}");
        } else {
            // The real SDK's own answer, not the preflight's: same subcode, one attempt.
            assert_eq!(creation["status"], "failed", "{what}: {report:#}");
            assert_eq!(creation["error"]["sub_code"], sub_code, "{what}: {report:#}");
            assert_eq!(creation["error"]["category"], "ExpectedError", "{what}");
            assert_eq!(creation["facts"]["attempts"], 1, "{what}: an ExpectedError is not retried");
            assert_eq!(creation["remedy"], remedy, "{what}");
        }
        let logs = text(&out.stderr);
        for secret in [jwt.as_str()].into_iter().chain(jwt.split('.').skip(1)) {
            assert!(!logs.contains(secret), "{what}: the token is in the logs");
        }
    }
}
