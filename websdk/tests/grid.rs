//! The preflight against the real Web Calling SDK on a generated grid of token cases: each claim
//! absent, of the wrong type, empty, and each of its meaningful values and forms, × agent kind ×
//! credential (plain, or with a token refresher). Hand-picked cases (`conformance.rs`) keep
//! missing corners; the grid covers the input space the SDK checks locally.
//!
//! `#[ignore]`d like the rest of the suite: `websdk/conformance.sh` runs a seeded sample
//! (`GRID_SAMPLE`, 300 by default; `GRID_SEED`, 1), `websdk/conformance.sh --full` the whole
//! grid (`GRID=full`). A case the SDK does not reject within [`LOCAL_BOUND`] passes its local
//! checks (it then reaches for the network, which is not there); its page is closed. Every case
//! must agree with the preflight exactly: the grid holds no token shape the preflight
//! deliberately answers differently (those are the hand-picked `empty-token` and
//! `payload-array`). Results: `target/conformance/sdk-VERSION/grid.json`, summarised per family
//! in docs/real-sdk.md.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use callagent_retry::sdk::{AccessToken, AgentKind, CallAgentError, CreateAgentRequest};
use callagent_websdk::{Failure, WebSdk, WebSdkError};
use serde::Serialize;
use serde_json::{Value, json};

#[path = "common/isolation.rs"]
mod isolation;
use isolation::{acs_claims, isolated, now, results_dir, sdk_package, teams_claims};

/// How long a local rejection may take: the SDK's token checks answer in milliseconds.
const LOCAL_BOUND: Duration = Duration::from_secs(3);
/// A case that passed within [`LOCAL_BOUND`] where the preflight predicts a rejection runs once
/// more on a fresh page with this bound: on two busy cores a page can stall for seconds, and a
/// stall must not read as "passes".
const RECHECK_BOUND: Duration = Duration::from_secs(20);
/// Pages working through the grid at once.
const WORKERS: usize = 4;

#[derive(Debug, Clone)]
struct GridCase {
    family: &'static str,
    name: String,
    claims: Value,
    kind: AgentKind,
    refresher: bool,
    display_name: Option<String>,
}

/// A claim's variant: `None` removes it.
type Variant = (&'static str, Option<Value>);

fn set(mut claims: Value, name: &str, value: &Option<Value>) -> Value {
    let map = claims.as_object_mut().expect("claims are an object");
    match value {
        Some(v) => map.insert(name.to_owned(), v.clone()),
        None => map.remove(name),
    };
    claims
}

fn kinds() -> [(AgentKind, &'static str); 2] {
    [(AgentKind::Acs, "acs"), (AgentKind::Teams, "teams")]
}

fn credentials() -> [(bool, &'static str); 2] {
    [(false, "plain"), (true, "refresher")]
}

/// The whole grid, in a fixed order.
fn grid() -> Vec<GridCase> {
    let skypeids: Vec<Variant> = vec![
        ("absent", None),
        ("empty", Some(json!(""))),
        ("number", Some(json!(7))),
        ("acs", Some(json!("acs:11111111-2222_00000001"))),
        ("spool", Some(json!("spool:11111111-2222_00000001"))),
        ("dod-acs", Some(json!("dod-acs:11111111-2222_00000001"))),
        ("gcch-acs", Some(json!("gcch-acs:11111111-2222_00000001"))),
        ("teams-extension", Some(json!("acs:11111111-2222_99999999-8888_00000001"))),
        ("orgid", Some(json!("orgid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"))),
        ("dod", Some(json!("dod:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"))),
        ("gcch", Some(json!("gcch:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"))),
        ("teamsvisitor", Some(json!("teamsvisitor:aaaaaaaa"))),
        ("orgid-in-array", Some(json!(["orgid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]))),
        ("mri-prefixed", Some(json!("8:orgid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"))),
        ("unknown-form", Some(json!("someone"))),
    ];
    let tids: Vec<Variant> = vec![
        ("absent", None),
        ("empty", Some(json!(""))),
        ("guid", Some(json!("99999999-8888-7777-6666-555555555555"))),
        ("zero", Some(json!(0))),
        ("true", Some(json!(true))),
    ];
    let resources: Vec<Variant> = vec![
        ("absent", None),
        ("empty", Some(json!(""))),
        ("guid", Some(json!("11111111-2222-3333-4444-555555555555"))),
        ("zero", Some(json!(0))),
    ];
    let scopes: Vec<Variant> = vec![
        ("absent", None),
        ("null", Some(Value::Null)),
        ("empty", Some(json!(""))),
        ("voip", Some(json!("voip"))),
        ("voip.join", Some(json!("voip.join"))),
        ("chat", Some(json!("chat"))),
        ("upper", Some(json!("VOIP"))),
        ("voipx", Some(json!("voipx"))),
        ("chat,voip", Some(json!("chat,voip"))),
        ("chat, voip", Some(json!("chat, voip"))),
        ("voip,chat", Some(json!("voip,chat"))),
        ("chat;voip", Some(json!("chat;voip"))),
        ("chat voip", Some(json!("chat voip"))),
        ("number", Some(json!(7))),
        ("array", Some(json!(["voip"]))),
        ("true", Some(json!(true))),
    ];
    let t = now();
    let exps: Vec<Variant> = vec![
        ("absent", None),
        ("future", Some(json!(t + 3600))),
        ("past", Some(json!(t - 60))),
        ("past-fraction", Some(json!(t as f64 - 59.5))),
        ("past-string", Some(json!((t - 60).to_string()))),
        ("zero", Some(json!(0))),
    ];
    let names: Vec<(&'static str, Option<String>)> = vec![
        ("none", None),
        ("empty", Some(String::new())),
        ("short", Some("Ada".into())),
        ("256", Some("x".repeat(256))),
        ("257", Some("x".repeat(257))),
        ("128-emoji", Some("😀".repeat(128))),
        ("129-emoji", Some("😀".repeat(129))),
    ];
    let bases = [("acs-token", acs_claims()), ("teams-token", teams_claims())];

    let mut cases = vec![];
    let mut push = |family, name: String, claims, kind, refresher, display_name| {
        cases.push(GridCase { family, name, claims, kind, refresher, display_name });
    };
    // The identity family: skypeid × tid × resourceId, on an otherwise valid token.
    for (s, skypeid) in &skypeids {
        for (t, tid) in &tids {
            for (r, resource) in &resources {
                let claims =
                    set(set(set(acs_claims(), "skypeid", skypeid), "tid", tid), "resourceId", resource);
                let claims = set(claims, "acsScope", &Some(json!("voip")));
                for (kind, k) in kinds() {
                    for (refresher, c) in credentials() {
                        let name = format!("skypeid={s} tid={t} resourceId={r} {k} {c}");
                        push("identity", name, claims.clone(), kind, refresher, None);
                    }
                }
            }
        }
    }
    // The scope family, with and without a resourceId (the SDK skips its scope checks when both
    // are missing).
    for (sc, scope) in &scopes {
        for (r, resource) in [("guid", Some(json!("11111111-2222-3333-4444-555555555555"))), ("absent", None)]
        {
            for (b, base) in &bases {
                let claims = set(set(base.clone(), "acsScope", scope), "resourceId", &resource);
                for (kind, k) in kinds() {
                    for (refresher, c) in credentials() {
                        let name = format!("acsScope={sc} resourceId={r} {b} {k} {c}");
                        push("scope", name, claims.clone(), kind, refresher, None);
                    }
                }
            }
        }
    }
    for (e, exp) in &exps {
        for (b, base) in &bases {
            let claims = set(base.clone(), "exp", exp);
            for (kind, k) in kinds() {
                for (refresher, c) in credentials() {
                    push("exp", format!("exp={e} {b} {k} {c}"), claims.clone(), kind, refresher, None);
                }
            }
        }
    }
    for (n, name) in &names {
        for (b, base) in &bases {
            for (kind, k) in kinds() {
                for (refresher, c) in credentials() {
                    let case = format!("displayName={n} {b} {k} {c}");
                    push("displayName", case, base.clone(), kind, refresher, name.clone());
                }
            }
        }
    }
    cases
}

/// The cases to run: the whole grid with `GRID=full`, else a seeded sample of `GRID_SAMPLE`
/// (SplitMix64 shuffle, seed `GRID_SEED`).
fn selection(all: Vec<GridCase>) -> (Vec<GridCase>, String) {
    let var = |name: &str| std::env::var(name).ok();
    if var("GRID").as_deref() == Some("full") {
        return (all, "the whole grid".into());
    }
    let size: usize = var("GRID_SAMPLE").and_then(|v| v.parse().ok()).unwrap_or(300);
    let seed: u64 = var("GRID_SEED").and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut all = all;
    for i in (1..all.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        all.swap(i, j);
    }
    all.truncate(size);
    (all, format!("a sample of {size} (seed {seed})"))
}

fn request(case: &GridCase) -> CreateAgentRequest {
    let mut r = CreateAgentRequest::new("8:acs:probe", AccessToken::unsigned(&case.claims), case.kind);
    r.display_name = case.display_name.clone();
    r.token_refresher = case.refresher;
    r
}

/// What the SDK did with a case: a subcode, `None` for "passes its local checks", or a failure
/// that is not an SDK error.
#[derive(Debug, Clone, PartialEq)]
enum Said {
    Rejected(u32),
    Passes,
    Other(String),
}

#[derive(Debug, Serialize)]
struct GridRow {
    family: &'static str,
    case: String,
    sdk: String,
    preflight: String,
    agrees: bool,
    note: &'static str,
}

fn label(sub: Option<u32>) -> String {
    sub.map_or("passes".into(), |s| s.to_string())
}

fn predicted(case: &GridCase) -> Option<u32> {
    callagent_retry::preflight::check(&request(case), SystemTime::now()).err().map(|e| e.sub_code())
}

/// The one token shape of the grid the preflight answers differently on purpose, and why.
fn deliberate(case: &GridCase, said: &Said) -> Option<&'static str> {
    let absent =
        |claim: &str| case.claims.get(claim).is_none_or(|v| v.is_null() || v == "" || v == 0 || v == false);
    let crash = matches!(said, Said::Other(e) if e.contains("TypeError"));
    (crash && absent("acsScope") && absent("resourceId") && absent("oid") && predicted(case) == Some(44114)).then_some(
        "neither acsScope, resourceId nor oid: the SDK crashes with a TypeError (no identity); preflight stops it \
         as 401/44114, a token without a scope",
    )
}

async fn run_case(tab: &callagent_websdk::Tab, case: &GridCase, bound: Duration) -> (Said, Vec<String>) {
    let mut problems = vec![];
    let said = match tokio::time::timeout(bound, tab.probe(&request(case), None)).await {
        Err(_) | Ok(Ok(_)) => Said::Passes,
        Ok(Err(f)) => match &*f {
            Failure { error: WebSdkError::Sdk(e), stringified, .. } => {
                // Every error parses the same from its getters and from JSON.stringify.
                match stringified.as_deref().map(serde_json::from_str::<CallAgentError>) {
                    Some(Ok(p)) if (p.code(), p.sub_code()) == (e.code(), e.sub_code()) => {}
                    other => problems.push(format!("{}: JSON.stringify gives {other:?}", case.name)),
                }
                Said::Rejected(e.sub_code())
            }
            Failure { error, .. } => Said::Other(error.to_string()),
        },
    };
    (said, problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and an isolated network namespace: run websdk/conformance.sh"]
async fn the_preflight_predicts_the_sdk_on_a_generated_grid() {
    isolated();
    let version = {
        let text = std::fs::read_to_string(sdk_package().join("package.json")).expect("websdk/page/build.sh");
        serde_json::from_str::<Value>(&text).expect("JSON")["version"].as_str().expect("a version").to_owned()
    };
    let all = grid();
    let total = all.len();
    let (cases, what) = selection(all);
    let sdk = Arc::new(WebSdk::launch(isolation::config()).await.expect("Chromium and the built page"));
    let queue = Arc::new(Mutex::new(cases.into_iter().collect::<VecDeque<_>>()));
    let started = Instant::now();
    let workers = (0..WORKERS).map(|_| {
        let (sdk, queue) = (Arc::clone(&sdk), Arc::clone(&queue));
        tokio::spawn(async move {
            let mut out = vec![];
            let mut tab = None;
            loop {
                let Some(case) = queue.lock().unwrap().pop_front() else { break };
                if tab.is_none() {
                    tab = Some(sdk.tab().await.expect("a page"));
                }
                let page = tab.as_ref().expect("opened above");
                let (mut said, mut problems) = run_case(page, &case, LOCAL_BOUND).await;
                // A case that passed left a creation reaching for the network: its page goes.
                // A rejection leaves nothing behind (the SDK checks the token before it
                // registers anything), so the page serves the next case.
                if said == Said::Passes
                    && let Some(s) = tab.take()
                {
                    s.close().await;
                    if predicted(&case).is_some() {
                        let fresh = sdk.tab().await.expect("a page");
                        (said, problems) = run_case(&fresh, &case, RECHECK_BOUND).await;
                        fresh.close().await;
                    }
                }
                out.push((case, said, problems));
            }
            if let Some(s) = tab.take() {
                s.close().await;
            }
            out
        })
    });
    let mut rows = vec![];
    let mut problems = vec![];
    let mut families: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    let mut notes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for worker in futures::future::join_all(workers).await {
        for (case, said, case_problems) in worker.expect("a worker") {
            problems.extend(case_problems);
            let predicted = callagent_retry::preflight::check(&request(&case), SystemTime::now())
                .err()
                .map(|e| e.sub_code());
            let sdk_said = match &said {
                Said::Rejected(s) => Some(*s),
                Said::Passes => None,
                Said::Other(_) => Some(u32::MAX),
            };
            let note = deliberate(&case, &said);
            let agrees = predicted == sdk_said || note.is_some();
            let family = families.entry(case.family).or_default();
            family.0 += 1;
            family.1 += usize::from(agrees);
            let sdk_text = match &said {
                Said::Other(e) => e.clone(),
                _ => label(sdk_said),
            };
            if let Some(note) = note {
                *notes.entry(note).or_default() += 1;
            }
            if !agrees {
                problems.push(format!(
                    "{}: the SDK says {sdk_text}, preflight {}",
                    case.name,
                    label(predicted)
                ));
            }
            rows.push(GridRow {
                family: case.family,
                case: case.name,
                sdk: sdk_text,
                preflight: label(predicted),
                agrees,
                note: note.unwrap_or(""),
            });
        }
    }
    sdk.close().await;
    rows.sort_by(|a, b| (a.family, &a.case).cmp(&(b.family, &b.case)));
    let path = results_dir(&version).join("grid.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    let agreed = rows.iter().filter(|r| r.agrees).count();
    eprintln!(
        "SDK {version}: {what} of {total} grid cases: {} ran, {agreed} agreed, {} differed, in {:.0?}",
        rows.len(),
        rows.len() - agreed,
        started.elapsed()
    );
    for (family, (n, ok)) in &families {
        eprintln!("  {family:<12} {n:>5} cases {ok:>5} agree");
    }
    for (note, n) in &notes {
        eprintln!("  deliberate, {n} cases: {note}");
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
