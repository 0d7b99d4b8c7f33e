//! Conformance of the crate's model against the real Web Calling SDK (2.0.0, pinned in
//! `page/package.json`), in headless Chromium with crafted unsigned tokens.
//!
//! The tests are `#[ignore]`d: they need Chromium, the built page and a network namespace with
//! loopback alone. `websdk/conformance.sh` provides all three and runs them; each test refuses
//! to run when any network interface but `lo` is visible, so no request can leave the machine.
//!
//! For every case the suite records what the SDK did (`target/conformance/*.json`, rendered
//! into docs/real-sdk.md by `cargo run -p callagent-websdk --example conformance_table`) and asserts:
//! the crate's `preflight` predicts it exactly, or the case is on [`DIFFERENCES`] with the
//! reason; every `CallingCommunicationError` parses as a `CallAgentError` from its getters and
//! from `JSON.stringify`; the retry layer's classification follows the SDK's category, or the
//! case is a documented exception.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use callagent_retry::classify::classify;
use callagent_retry::sdk::{AccessToken, AgentKind, CallAgentError, CreateAgentRequest, ErrorCategory};
use callagent_websdk::{Failure, WebSdk, WebSdkConfig, WebSdkError};
use serde_json::{Value, json};

/// Cases where the crate's preflight deliberately answers differently from the SDK, and why.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "empty-token",
        "the SDK's credential throws a plain Error before the SDK sees the token; preflight reports the \
         SDK's own code for an empty token (401/44109, ExpectedError) so the layer stops with a remedy",
    ),
    (
        "payload-array",
        "the SDK throws a TypeError on a payload that is JSON but not an object; preflight reports it \
         as an undecodable payload (401/44117), like one that is not JSON",
    ),
];

/// Subcodes whose category says retry but which a retry cannot fix, and what the layer does.
const CLASSIFICATION_EXCEPTIONS: &[(u32, &str)] = &[(
    44117,
    "UnexpectedClientError, but the same token fails the same way in milliseconds every time: the \
     catalog marks it deterministic, the layer stops, and the remedy layer's token refresh applies",
)];

#[path = "common/isolation.rs"]
mod isolation;
use isolation::{acs_claims, isolated, now, results_dir, sdk_package, teams_claims};

/// `base` with `changes` applied: a value sets the claim, `null` removes it.
fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(&k);
        } else {
            base[k] = v;
        }
    }
    base
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    token: String,
    kind: AgentKind,
    display_name: Option<String>,
    refresher: bool,
    what: &'static str,
}

fn jwt(claims: &Value) -> String {
    AccessToken::unsigned(claims).expose_secret().to_owned()
}

fn case(name: &'static str, what: &'static str, claims: Value, kind: AgentKind) -> Case {
    Case { name, token: jwt(&claims), kind, display_name: None, refresher: false, what }
}

/// Every local check of the SDK, its opposite, and the edge shapes; each answers without the
/// network (the valid ones are in `unreachable_service`).
fn token_cases() -> Vec<Case> {
    use AgentKind::{Acs, Teams};
    let acs = acs_claims;
    let teams = teams_claims;
    let mut cases = vec![
        case("scope-number", "acsScope is a number", with(acs(), json!({"acsScope": 7})), Acs),
        case("scope-array", "acsScope is [\"voip\"]", with(acs(), json!({"acsScope": ["voip"]})), Acs),
        case("scope-missing", "no acsScope", with(acs(), json!({"acsScope": null})), Acs),
        case("scope-chat", "acsScope \"chat\"", with(acs(), json!({"acsScope": "chat"})), Acs),
        case("scope-empty", "acsScope \"\"", with(acs(), json!({"acsScope": ""})), Acs),
        case("scope-upper", "acsScope \"VOIP\"", with(acs(), json!({"acsScope": "VOIP"})), Acs),
        case("scope-voipx", "acsScope \"voipx\"", with(acs(), json!({"acsScope": "voipx"})), Acs),
        case("scope-chatvoip", "acsScope \"chatvoip\"", with(acs(), json!({"acsScope": "chatvoip"})), Acs),
        case("no-skypeid", "no skypeid", with(acs(), json!({"skypeid": null})), Acs),
        case("no-resource", "ACS user, no resourceId", with(acs(), json!({"resourceId": null})), Acs),
        case("teams-on-acs", "Teams user's token (tid) on a CallAgent", teams(), Acs),
        case(
            "teams-no-resource-on-acs",
            "Teams token without resourceId on a CallAgent",
            with(teams(), json!({"resourceId": null})),
            Acs,
        ),
        case(
            "teams-no-resource-on-teams",
            "Teams token without resourceId on a TeamsCallAgent",
            with(teams(), json!({"resourceId": null})),
            Teams,
        ),
        case("acs-on-teams", "ACS user's token on a TeamsCallAgent", acs(), Teams),
        case(
            "tid-acs-skypeid-on-acs",
            "tid with an acs: skypeid on a CallAgent",
            with(acs(), json!({"tid": "t"})),
            Acs,
        ),
        case(
            "orgid-no-tid-on-acs",
            "orgid: skypeid without tid on a CallAgent",
            with(teams(), json!({"tid": null})),
            Acs,
        ),
        case(
            "orgid-no-tid-on-teams",
            "orgid: skypeid without tid on a TeamsCallAgent",
            with(teams(), json!({"tid": null})),
            Teams,
        ),
        case(
            "bad-scope-and-no-skypeid",
            "acsScope \"chat\" and no skypeid",
            with(acs(), json!({"acsScope": "chat", "skypeid": null})),
            Acs,
        ),
        case(
            "no-skypeid-and-no-resource",
            "no skypeid and no resourceId",
            with(acs(), json!({"skypeid": null, "resourceId": null})),
            Acs,
        ),
        case(
            "bad-scope-and-teams-on-acs",
            "acsScope number on a Teams token, CallAgent",
            with(teams(), json!({"acsScope": 7})),
            Acs,
        ),
        case("scope-space", "acsScope \"chat voip\"", with(acs(), json!({"acsScope": "chat voip"})), Acs),
        case(
            "scope-comma-space",
            "acsScope \"chat, voip\"",
            with(acs(), json!({"acsScope": "chat, voip"})),
            Acs,
        ),
        case("scope-join", "acsScope \"voip.join\"", with(acs(), json!({"acsScope": "voip.join"})), Acs),
        case(
            "teams-no-skypeid-on-acs",
            "Teams token without skypeid on a CallAgent",
            with(teams(), json!({"skypeid": null})),
            Acs,
        ),
        case(
            "acs-no-resource-on-teams",
            "ACS token without resourceId on a TeamsCallAgent",
            with(acs(), json!({"resourceId": null})),
            Teams,
        ),
        case(
            "expired-refresher",
            "exp in the past, with a tokenRefresher",
            with(acs(), json!({"exp": now() - 60})),
            Acs,
        ),
        case(
            "expired-bad-scope-refresher",
            "exp in the past and acsScope \"chat\", with a tokenRefresher",
            with(acs(), json!({"exp": now() - 60, "acsScope": "chat"})),
            Acs,
        ),
        case(
            "expired-teams-on-acs-refresher",
            "exp in the past, Teams token on a CallAgent, with a tokenRefresher",
            with(teams(), json!({"exp": now() - 60})),
            Acs,
        ),
        case(
            "exp-string-refresher",
            "exp a string in the past, with a tokenRefresher",
            with(acs(), json!({"exp": (now() - 60).to_string()})),
            Acs,
        ),
        case("no-exp-refresher", "no exp, with a tokenRefresher", with(acs(), json!({"exp": null})), Acs),
        case(
            "fraction-exp-refresher",
            "fractional exp in the past, with a tokenRefresher",
            with(acs(), json!({"exp": (now() - 60) as f64 + 0.5})),
            Acs,
        ),
    ];
    for c in cases.iter_mut().filter(|c| c.name.ends_with("-refresher")) {
        c.refresher = true;
    }
    let long = "x".repeat(257);
    cases.extend([
        Case {
            display_name: Some("Ada".into()),
            ..case("display-name-teams", "a display name on a TeamsCallAgent", teams(), Teams)
        },
        Case {
            display_name: Some(long.clone()),
            ..case("display-name-257", "a 257-character display name (ACS)", acs(), Acs)
        },
        Case {
            display_name: Some(long.clone()),
            ..case(
                "display-name-257-teams",
                "a 257-character display name on a TeamsCallAgent",
                teams(),
                Teams,
            )
        },
        Case {
            display_name: Some("x".repeat(256)),
            ..case("display-name-256", "a 256-character display name (ACS)", acs(), Acs)
        },
        Case {
            display_name: Some("Ada".into()),
            ..case(
                "display-name-teams-token-on-acs",
                "a display name with a Teams token on a CallAgent",
                teams(),
                Acs,
            )
        },
        Case {
            display_name: Some(long.clone()),
            ..case(
                "display-name-257-bad-scope",
                "a 257-character display name and acsScope \"chat\"",
                with(acs(), json!({"acsScope": "chat"})),
                Acs,
            )
        },
        Case { token: String::new(), ..case("empty-token", "an empty token", acs(), Acs) },
        Case { token: "opaque".into(), ..case("not-a-jwt", "a token that is not a JWT", acs(), Acs) },
        Case {
            token: "eyJhbGciOiJub25lIn0.!!!.sig".into(),
            ..case("payload-not-base64", "a payload that is not base64", acs(), Acs)
        },
        Case {
            token: "eyJhbGciOiJub25lIn0.bm90IGpzb24.sig".into(),
            ..case("payload-not-json", "a payload that is not JSON", acs(), Acs)
        },
        Case {
            token: "eyJhbGciOiJub25lIn0.WzEsMl0.sig".into(),
            ..case("payload-array", "a payload that is a JSON array", acs(), Acs)
        },
    ]);
    cases
}

#[path = "common/row.rs"]
mod row;
use row::Row;

fn request(case: &Case) -> CreateAgentRequest {
    let mut r = CreateAgentRequest::new("8:acs:probe", AccessToken::new(case.token.clone()), case.kind);
    r.display_name = case.display_name.clone();
    r.token_refresher = case.refresher;
    r
}

fn predicted(case: &Case) -> Option<u32> {
    callagent_retry::preflight::check(&request(case), SystemTime::now()).err().map(|e| e.sub_code())
}

/// The version of the SDK package the page under test was built from.
fn sdk_version() -> String {
    let path = sdk_package().join("package.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (websdk/page/build.sh)", path.display()));
    let package: Value = serde_json::from_str(&text).expect("package.json is JSON");
    package["version"].as_str().expect("package.json has a version").to_owned()
}

fn write(part: &str, rows: &[Row]) {
    let path = results_dir(&sdk_version()).join(format!("{part}.json"));
    std::fs::write(path, serde_json::to_string_pretty(rows).unwrap()).unwrap();
}

/// Checks an SDK error the way the suite promises: it parses both ways, and classification
/// follows its category (or a documented exception).
fn check_error(case: &str, e: &CallAgentError, stringified: Option<&str>) -> Vec<String> {
    let mut problems = vec![];
    match stringified.map(serde_json::from_str::<CallAgentError>) {
        Some(Ok(parsed)) => {
            if (parsed.code(), parsed.sub_code(), parsed.categories(), parsed.message())
                != (e.code(), e.sub_code(), e.categories(), e.message())
            {
                problems.push(format!("{case}: JSON.stringify parses as {parsed:?}, the getters say {e:?}"));
            }
        }
        Some(Err(err)) => problems.push(format!("{case}: JSON.stringify does not parse: {err}")),
        None => problems.push(format!("{case}: no JSON.stringify of the error")),
    }
    let retry = classify(e, &Default::default()).retry;
    let category_says = e.categories().iter().any(|c| c.is_retryable() == Some(true))
        && !e.categories().contains(&ErrorCategory::ExpectedError);
    if retry != category_says && !CLASSIFICATION_EXCEPTIONS.iter().any(|(s, _)| *s == e.sub_code()) {
        problems.push(format!(
            "{case}: the layer would {} {}/{} but its category is {:?}",
            if retry { "retry" } else { "stop on" },
            e.code(),
            e.sub_code(),
            e.categories()
        ));
    }
    problems
}

/// What the SDK did, for comparing with the preflight: made an agent (what "passes" predicts),
/// threw its own error with a subcode, or something else (a plain exception, a bridge failure),
/// which no prediction matches.
#[derive(Debug, PartialEq)]
enum Said {
    Agent,
    Sdk(u32),
    Other,
}

impl Said {
    fn agrees(&self, prediction: Option<u32>) -> bool {
        match (prediction, self) {
            (None, Said::Agent) => true,
            (Some(p), Said::Sdk(s)) => p == *s,
            _ => false,
        }
    }
}

fn outcome(result: &Result<callagent_websdk::Agent, Box<Failure>>) -> (String, String, Said) {
    match result.as_ref().map_err(|f| &f.error) {
        Ok(agent) => (format!("agent, {:?}", agent.initial_state()), "-".into(), Said::Agent),
        Err(WebSdkError::Sdk(e)) => {
            (format!("{}/{}", e.code(), e.sub_code()), e.category_names().join(", "), Said::Sdk(e.sub_code()))
        }
        Err(WebSdkError::Script { name, message }) => {
            (format!("throws {name}: {message}"), "-".into(), Said::Other)
        }
        Err(error) => (format!("bridge: {error}"), "-".into(), Said::Other),
    }
}

async fn launch() -> WebSdk {
    isolated();
    let sdk = WebSdk::launch(isolation::config())
        .await
        .expect("Chromium and the built page (websdk/conformance.sh)");
    let tab = sdk.tab().await.expect("a page");
    let version = tab.sdk_version().await.expect("the page's SDK version");
    tab.close().await;
    assert_eq!(version, sdk_version(), "the page under test was built from the installed package");
    sdk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn token_checks_match_the_preflight() {
    use futures::StreamExt;
    let sdk = Arc::new(launch().await);
    let started = Instant::now();
    // Six pages at once, a new case as soon as one ends: the few cases that pass every local
    // check take ~14 s each to settle with no network, and run side by side instead of holding
    // up a batch each. Rows keep the cases' order.
    let cases = token_cases();
    let mut rows = vec![];
    let mut problems = vec![];
    let mut results: Vec<_> = futures::stream::iter(cases.into_iter().enumerate())
        .map(|(i, c)| {
            let sdk = Arc::clone(&sdk);
            async move {
                let tab = sdk.tab().await.expect("a page");
                let result = tab.probe(&request(&c), None).await;
                tab.close().await;
                (i, c, result)
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    results.sort_by_key(|(i, ..)| *i);
    for (_, c, result) in results {
        let (sdk_said, category, said) = outcome(&result);
        let took = match &result {
            Ok(a) => a.creation_time(),
            Err(f) => f.took.unwrap_or_default(),
        };
        if let Err(f) = &result
            && let Failure { error: WebSdkError::Sdk(e), stringified, .. } = &**f
        {
            problems.extend(check_error(c.name, e, stringified.as_deref()));
        }
        if let Ok(agent) = &result {
            // Past every local check: the SDK reaches for the service, which is not there.
            if agent.initial_state() != &callagent_websdk::ConnectionState::Disconnected {
                problems.push(format!("{}: an agent {:?} with no network", c.name, agent.initial_state()));
            }
        }
        let prediction = predicted(&c);
        let agrees = said.agrees(prediction);
        let difference = DIFFERENCES.iter().find(|(n, _)| *n == c.name);
        if !agrees && difference.is_none() {
            problems.push(format!("{}: the SDK says {sdk_said}, preflight predicts {prediction:?}", c.name));
        }
        rows.push(Row {
            case: c.name.into(),
            what: c.what.into(),
            agent: if c.kind == AgentKind::Teams { "Teams" } else { "ACS" }.into(),
            sdk: sdk_said,
            category,
            took_ms: took.as_millis() as u64,
            preflight: prediction.map_or("passes".into(), |s| s.to_string()),
            agrees,
            note: difference.map_or(String::new(), |d| d.1.to_owned()),
        });
    }
    write("tokens", &rows);
    sdk.close().await;
    eprintln!("{} token cases in {:?}", rows.len(), started.elapsed());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_script_exception_never_agrees_with_a_prediction() {
    assert!(Said::Agent.agrees(None));
    assert!(Said::Sdk(44113).agrees(Some(44113)));
    assert!(!Said::Other.agrees(None), "a TypeError is not the agent \"passes\" predicts");
    assert!(!Said::Sdk(44113).agrees(None) && !Said::Agent.agrees(Some(44113)));
}

fn valid(kind: AgentKind, claims: Value) -> CreateAgentRequest {
    CreateAgentRequest::new("8:acs:probe", AccessToken::unsigned(&claims), kind)
}

fn describe(r: &Result<callagent_websdk::Agent, WebSdkError>) -> String {
    match r {
        Ok(a) => format!(
            "agent, {:?}{}",
            a.initial_state(),
            if a.is_existing() { " (the existing one)" } else { "" }
        ),
        Err(WebSdkError::Sdk(e)) => {
            format!("{}/{} {}", e.code(), e.sub_code(), e.category_names().join(", "))
        }
        Err(e) => format!("{e}"),
    }
}

fn race_row(
    case: &str,
    what: &str,
    agent: &'static str,
    sdk: String,
    took: std::time::Duration,
    note: &str,
) -> Row {
    Row {
        case: case.into(),
        what: what.into(),
        agent: agent.into(),
        sdk,
        category: String::new(),
        took_ms: took.as_millis() as u64,
        preflight: "-".into(),
        agrees: true,
        note: note.into(),
    }
}

/// What creation does when the service cannot be reached: it resolves, with an agent that is
/// `Disconnected` and stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn an_unreachable_service_gives_a_disconnected_agent() {
    let sdk = Arc::new(launch().await);
    let cases = [
        ("acs-unreachable", "a valid ACS token, no network", AgentKind::Acs, acs_claims(), false),
        ("teams-unreachable", "a valid Teams token, no network", AgentKind::Teams, teams_claims(), false),
        (
            "expired-plain",
            "exp in the past, plain credential, no network",
            AgentKind::Acs,
            with(acs_claims(), json!({"exp": now() - 60})),
            false,
        ),
    ];
    let runs = cases.iter().cloned().map(|(name, what, kind, claims, refresher)| {
        let sdk = Arc::clone(&sdk);
        tokio::spawn(async move {
            let mut req = valid(kind, claims);
            req.token_refresher = refresher;
            let started = Instant::now();
            let result = sdk.create(&req).await;
            let took = started.elapsed();
            // Does it ever connect, or say anything, in the next seconds?
            let later = match &result {
                Ok(agent) => {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    Some((agent.connection_state().await, agent.tab().reach().await))
                }
                Err(_) => None,
            };
            (name, what, kind, result, took, later)
        })
    });
    let mut rows = vec![];
    let mut problems = vec![];
    for run in futures::future::join_all(runs).await {
        let (name, what, kind, result, took, later) = run.unwrap();
        match (&result, later) {
            (Ok(_), Some((_, Err(e)))) => problems.push(format!("{name}: cannot read the page's hosts: {e}")),
            (Ok(_), Some((_, Ok(hosts))))
                if !hosts.iter().any(|h| h.unreached()) || hosts.iter().any(|h| h.answered > 0) =>
            {
                // The page sees the SDK's requests (page/reach.js wraps what the SDK sends with
                // before it loads), and here, with every external host mapped away, none answers.
                problems
                    .push(format!("{name}: the page's hosts are not the SDK's unreached ones: {hosts:?}"));
            }
            (Ok(agent), Some((Ok((state, changes)), _))) => {
                if agent.initial_state() != &callagent_websdk::ConnectionState::Disconnected
                    || state != *agent.initial_state()
                    || !changes.is_empty()
                {
                    problems.push(format!(
                        "{name}: {:?} then {state:?} with changes {changes:?}",
                        agent.initial_state()
                    ));
                }
            }
            (Ok(_), Some((Err(e), _))) => problems.push(format!("{name}: cannot read the state later: {e}")),
            (Ok(_), None) => unreachable!("an agent is read later"),
            (Err(e), _) => problems.push(format!("{name}: {e}")),
        }
        let described = describe(&result);
        // What the SDK's `dispose()` does with no network, and that disposing is bounded whatever
        // it does (the connect check disposes agents that never connected). The agents share a
        // page, which closes with the last.
        let disposed = match result {
            Ok(agent) => {
                let started = Instant::now();
                let disposed = agent.dispose().await;
                let took = started.elapsed();
                if took > std::time::Duration::from_secs(8) {
                    problems.push(format!("{name}: dispose took {took:?}"));
                }
                match disposed {
                    Ok(()) => "; dispose() settles".to_owned(),
                    Err(WebSdkError::DisposeTimeout(after)) => {
                        format!("; dispose() does not settle (let go after {} s)", after.as_secs())
                    }
                    Err(e) => {
                        problems.push(format!("{name}: dispose: {e}"));
                        format!("; dispose(): {e}")
                    }
                }
            }
            Err(_) => String::new(),
        };
        rows.push(race_row(
            name,
            what,
            if kind == AgentKind::Teams { "Teams" } else { "ACS" },
            format!("{described}; no state change in the next 5 s{disposed}"),
            took,
            "",
        ));
    }
    write("unreachable", &rows);
    sdk.close().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Two creations for one identity, and two identities on one client.
///
/// Each shape runs on its own page, all at once (a creation that reaches for the network takes
/// ~14 s to settle, so one after another they took ~100 s), and each with identities of its own,
/// so no shape sees another's agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn concurrent_creations_follow_the_sdk_rules() {
    let sdk = launch().await;
    // An ACS identity of shape `n`'s own (`k` tells two identities of one shape apart).
    let acs = |n: u32, k: u32| {
        let id = format!("acs:11111111-2222_{:08}", 100 * n + k);
        valid(AgentKind::Acs, with(acs_claims(), json!({ "skypeid": id })))
    };
    let teams = valid(AgentKind::Teams, teams_claims());
    let shapes: [(&str, &str, CreateAgentRequest, CreateAgentRequest, bool, u64); 6] = [
        (
            "same-client-same-tick",
            "two creates for one identity on one CallClient, in the same tick",
            acs(1, 1),
            acs(1, 1),
            true,
            0,
        ),
        (
            "same-client-pending",
            "a second create for one identity on one CallClient, 300 ms later (the first pending)",
            acs(2, 1),
            acs(2, 1),
            true,
            300,
        ),
        (
            "two-clients-same-tick",
            "two CallClients creating for one identity in the same tick",
            acs(3, 1),
            acs(3, 1),
            false,
            0,
        ),
        (
            "two-clients-300ms",
            "two CallClients for one identity, 300 ms apart",
            acs(4, 1),
            acs(4, 1),
            false,
            300,
        ),
        (
            "teams-two-clients-same-tick",
            "two CallClients creating a TeamsCallAgent for one identity at once",
            teams.clone(),
            teams,
            false,
            0,
        ),
        (
            "other-identity-same-client",
            "a second identity on the same CallClient, at once",
            acs(6, 1),
            acs(6, 2),
            true,
            0,
        ),
    ];
    let races = shapes.iter().map(|(name, what, first, second, same_client, delay)| {
        race_shape(&sdk, name, what, first, second, *same_client, *delay)
    });
    let (races, again) =
        futures::join!(futures::future::join_all(races), create_dispose_create(&sdk, acs(7, 1)));
    let mut rows = vec![];
    let mut problems = vec![];
    for (row, found) in races.into_iter().chain([again]) {
        rows.push(row);
        problems.extend(found);
    }
    write("concurrency", &rows);
    sdk.close().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One race on a page of its own: its row, and what in it disagrees with the rules.
async fn race_shape(
    sdk: &WebSdk,
    name: &str,
    what: &str,
    first: &CreateAgentRequest,
    second: &CreateAgentRequest,
    same_client: bool,
    delay: u64,
) -> (Row, Vec<String>) {
    let mut problems = vec![];
    let tab = sdk.tab().await.expect("a page");
    let started = Instant::now();
    let race = tab
        .race(first, second, same_client, std::time::Duration::from_millis(delay))
        .await
        .expect("the race ran");
    let took = started.elapsed();
    tab.close().await;
    let said = format!(
        "first: {}; second: {}{}",
        describe(&race.first),
        describe(&race.second),
        if race.same_agent { "; the same agent object" } else { "" }
    );
    let sub = |r: &Result<callagent_websdk::Agent, WebSdkError>| {
        r.as_ref().err().and_then(WebSdkError::sdk_error).map(CallAgentError::sub_code)
    };
    let subs = [sub(&race.first), sub(&race.second)];
    let expected_ok = match name {
        "same-client-pending" | "two-clients-300ms" => race.same_agent,
        "same-client-same-tick" => subs.contains(&Some(40008)),
        "two-clients-same-tick" => subs.contains(&Some(40228)),
        "teams-two-clients-same-tick" => subs.contains(&Some(40230)),
        "other-identity-same-client" => subs.contains(&Some(40008)),
        _ => false,
    };
    if !expected_ok {
        problems.push(format!("{name}: {said}"));
    }
    for e in [&race.first, &race.second]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .filter_map(WebSdkError::sdk_error)
    {
        if classify(e, &Default::default()).retry {
            problems.push(format!("{name}: the layer would retry {}/{}", e.code(), e.sub_code()));
        }
    }
    let agent = if first.kind == AgentKind::Teams { "Teams" } else { "ACS" };
    (race_row(name, what, agent, said, took, ""), problems)
}

/// Create, await dispose, create again (on a fresh client): works, and takes seconds.
async fn create_dispose_create(sdk: &WebSdk, acs: CreateAgentRequest) -> (Row, Vec<String>) {
    let again = match sdk.create(&acs).await {
        Ok(agent) => {
            let tab = agent.tab().clone();
            agent.dispose().await.expect("dispose");
            let started = Instant::now();
            let again = tab.create(&acs).await;
            let took = started.elapsed();
            let said = describe(&again);
            if let Ok(agent) = again {
                let _ = agent.dispose_and_close().await;
            }
            (said, took)
        }
        Err(e) => (format!("the first creation failed: {e}"), std::time::Duration::ZERO),
    };
    let problems = if again.0.starts_with("agent") {
        vec![]
    } else {
        vec![format!("create-dispose-create: {}", again.0)]
    };
    let row = race_row(
        "create-dispose-create",
        "create, await dispose(), create again",
        "ACS",
        again.0,
        again.1,
        "",
    );
    (row, problems)
}

/// The families of the SDK's error table whose rows `CallClient`, `createCallAgent`,
/// `createTeamsCallAgent` or the credential throw.
const CREATION_FAMILIES: &[&str] = &["CALL_CLIENT", "CALL_STACK", "CALL_AGENT", "INTERNAL", "IDENTIFIER"];

/// Rows of those families that creation never throws (only calls, push notifications, events and
/// disposal do), so the catalog leaves them out.
const NOT_AT_CREATION: &[(u32, &str)] = &[
    (40011, "disposing a CallClient"),
    (40121, "disposing the base stack"),
    (40122, "disposing the user stack"),
    (40200, "calls with Teams users through a proxy or custom TURN"),
    (40202, "calling yourself"),
    (40203, "using a disposed CallAgent"),
    (40204, "using a disposed TeamsCallAgent"),
    (40205, "subscribing to an unknown CallAgent event"),
    (40206, "unsubscribing from an unknown CallAgent event"),
    (40207, "joining an immersive call"),
    (40208, "starting or joining a call without a stack"),
    (40209, "joining with an invalid locator"),
    (40210, "joining with an invalid meeting link"),
    (40212, "starting a Teams group call"),
    (40213, "starting a one-to-one call"),
    (40218, "push notification data"),
    (40219, "handling a push notification"),
    (40220, "push notification payload"),
    (40221, "push notification payload"),
    (40222, "push notification payload"),
    (40223, "an incoming call already being processed"),
    (40224, "handling an incoming call push notification"),
    (40225, "a missed call"),
    (40226, "starting a call (userIds)"),
    (40227, "starting a call (userIds)"),
    (40236, "ACS-Teams call targets"),
    (40238, "joining a Teams for life meeting"),
    (40240, "disposing a CallAgent"),
    (40241, "disposing a TeamsCallAgent"),
    (44000, "parsing a call target's phone number"),
    (44001, "parsing a call target's identifier"),
    (44002, "parsing a call target's identifier"),
    (44003, "parsing a call target's identifier"),
    (44004, "a call target's identifier"),
    (44005, "a call target's identifier"),
    (44006, "a call target's identifier"),
    (44007, "a call target's identifier"),
    (44008, "a call target's identifier"),
    (44009, "a call target's identifier"),
    (44010, "parsing a call target's identifier"),
    (44011, "a call's list of identifiers"),
    (44013, "a call target's Teams extension user identifier"),
];

/// One row of the SDK's error table: family, name, code, subcode, categories.
#[derive(Debug)]
struct TableRow {
    family: String,
    name: String,
    code: u16,
    sub_code: u32,
    categories: String,
}

/// The SDK's error table, read from its minified bundle, where a family looks like
/// `CALL_AGENT:{INIT_FAIL:{message:"…",code:500,subCode:40216,resultCategories:["…"]},NEXT:{…}}`.
fn sdk_error_table(text: &str) -> Vec<TableRow> {
    let ident = |s: &str| {
        let start = s.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        (start, s[start..].to_owned())
    };
    let mut rows = vec![];
    let mut family = String::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(":{message:").map(|i| from + i) {
        from = at + 1;
        let (start, name) = ident(&text[..at]);
        if name.is_empty() {
            continue;
        }
        // A family's first row follows `FAMILY:{`; the others follow `},`.
        if text[..start].ends_with(":{") {
            family = ident(&text[..start - 2]).1;
        }
        let rest = &text[at..(at + 2000).min(text.len())];
        let field = |key: &str| rest.split_once(key).map(|(_, v)| v);
        // Minified numbers may be written with an exponent (`subCode:4e4` is 40000).
        let number = |key: &str| {
            let v = field(key)?.split(|c: char| !(c.is_ascii_digit() || c == 'e' || c == '.')).next()?;
            let n: f64 = v.parse().ok()?;
            (n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n)).then_some(n as u32)
        };
        let (Some(code), Some(sub_code)) = (number(",code:"), number(",subCode:")) else { continue };
        let categories = field(",resultCategories:[")
            .and_then(|v| v.split_once(']'))
            .map_or(String::new(), |(c, _)| c.replace('"', ""));
        let code = u16::try_from(code).unwrap_or(u16::MAX);
        rows.push(TableRow { family: family.clone(), name, code, sub_code, categories });
    }
    rows
}

/// The catalog is complete and right against the SDK's own error table in the installed package:
/// every row of the creation families is catalogued (or listed as not thrown at creation), and
/// every catalogued row has the table's code and category (all but the troubleshooting page's
/// 44214, which the SDK throws as 40214).
#[test]
#[ignore = "needs the installed SDK package: run websdk/conformance.sh"]
fn the_catalog_agrees_with_the_sdk_error_table() {
    let bundle = sdk_package().join("dist-esm/sdk.bundle.js");
    let text = std::fs::read_to_string(&bundle)
        .unwrap_or_else(|e| panic!("{}: {e} (websdk/page/build.sh installs the SDK)", bundle.display()));
    let rows = sdk_error_table(&text);
    let creation: Vec<&TableRow> =
        rows.iter().filter(|r| CREATION_FAMILIES.contains(&r.family.as_str())).collect();
    assert!(rows.len() > 300 && creation.len() > 80, "the table was not found ({} rows)", rows.len());
    let mut problems = vec![];
    for r in &creation {
        let catalogued = callagent_retry::sdk::catalog::lookup(r.sub_code).is_some();
        let excluded = NOT_AT_CREATION.iter().any(|(s, _)| *s == r.sub_code);
        if !catalogued && !excluded {
            problems.push(format!(
                "{}.{} ({}/{}, {}) is missing from the catalog",
                r.family, r.name, r.code, r.sub_code, r.categories
            ));
        }
        if catalogued && excluded {
            problems.push(format!("{}: both catalogued and listed as not thrown at creation", r.sub_code));
        }
    }
    for e in callagent_retry::sdk::catalog::entries() {
        if e.sub_code == 44214 {
            assert!(!rows.iter().any(|r| r.sub_code == 44214), "the SDK now has 44214 in its table");
            continue;
        }
        match rows.iter().find(|r| r.sub_code == e.sub_code) {
            Some(r) if r.code == e.code && r.categories == e.category.as_str() => {}
            Some(r) => {
                problems.push(format!("{}: catalog {} {:?}, SDK {r:?}", e.sub_code, e.code, e.category))
            }
            None => problems.push(format!("{}: not in the SDK's table", e.sub_code)),
        }
    }
    eprintln!(
        "SDK {}: {} table rows, {} in the creation families, {} catalogued",
        sdk_version(),
        rows.len(),
        creation.len(),
        callagent_retry::sdk::catalog::entries().len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A creation that does not settle in time ends with `Timeout`, and its page is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn a_creation_that_never_settles_is_bounded_and_its_page_closed() {
    isolated();
    // A valid token takes ~14 s to resolve with no network: far past a 2 s bound.
    // No warm page: the page count compared is this creation's alone.
    let config = WebSdkConfig {
        create_timeout: std::time::Duration::from_secs(2),
        warm_pages: 0,
        ..isolation::config()
    };
    let sdk = WebSdk::launch(config).await.expect("Chromium and the built page");
    let before = sdk.open_pages().await.expect("pages");
    // The page is opened (and the SDK bundle started) first, under its own bound
    // (`launch_timeout`): loading the bundle alone took 9 s once, with the other conformance
    // tests' browsers busy on two cores. The creation's bound is what is timed here.
    let tab = sdk.tab().await.expect("a page with the SDK");
    let started = Instant::now();
    let err = tab.create(&valid(AgentKind::Acs, acs_claims())).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, WebSdkError::Timeout(std::time::Duration::from_secs(2)));
    // 2 s and the page's close, far from the ~14 s the creation takes to settle by itself.
    assert!(took < std::time::Duration::from_secs(8), "bounded: {took:?}");
    assert!(classify(&err, &Default::default()).retry, "a timeout is retryable");
    // The browser reports a closed target a moment later.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sdk.open_pages().await.expect("pages"), before, "the creation's page was closed");
    sdk.close().await;
}
