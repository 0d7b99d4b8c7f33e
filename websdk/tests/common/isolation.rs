//! The network check every browser test makes, and the token claims the tests start from.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Refuses to go on when any network interface but `lo` is visible to this process.
pub(crate) fn isolated() {
    // This process's network namespace (/sys/class/net shows the mount's, not ours).
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|i| i.trim().to_owned()))
        .collect();
    assert!(!interfaces.is_empty(), "cannot read this process's network interfaces");
    assert!(
        interfaces.iter().all(|i| i == "lo"),
        "refusing to run the real SDK with network interfaces {interfaces:?} visible: run websdk/conformance.sh, \
         which runs the suite in a network namespace with loopback alone"
    );
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A valid ACS token's claims: with no network the SDK resolves a `Disconnected` agent (~14 s).
pub(crate) fn acs_claims() -> Value {
    json!({"skypeid": "acs:11111111-2222_00000001", "scp": 1792, "csi": now(), "iat": now(),
           "exp": now() + 3600, "acsScope": "chat,voip", "resourceId": "11111111-2222-3333-4444-555555555555",
           "resourceLocation": "unitedstates"})
}

/// The built page under test: `CALLAGENT_WEBSDK_PAGE` (what `websdk/conformance.sh` sets to run
/// the suite against another pinned SDK, e.g. `websdk/page/sdk-1.46.1/dist`), else the default.
pub(crate) fn config() -> callagent_websdk::WebSdkConfig {
    let mut config = callagent_websdk::WebSdkConfig::isolated();
    if let Some(dir) = std::env::var_os("CALLAGENT_WEBSDK_PAGE") {
        config.page_dir = dir.into();
    }
    config
}

/// The installed SDK package next to the page under test (`page/dist` ↔ `page/node_modules`).
#[allow(dead_code)] // not every test binary reads the package
pub(crate) fn sdk_package() -> std::path::PathBuf {
    let page = config().page_dir;
    page.parent().unwrap_or(&page).join("node_modules/@azure/communication-calling")
}

/// Where a test writes its results for the SDK `version`: `target/conformance/sdk-VERSION/`.
#[allow(dead_code)] // not every test binary writes results
pub(crate) fn results_dir(version: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/conformance"))
        .join(format!("sdk-{version}"));
    std::fs::create_dir_all(&dir).expect("target/conformance is writable");
    dir
}

/// A valid Teams user's token's claims (`orgid:` user, `tid`).
#[allow(dead_code)] // not every test binary makes Teams agents
pub(crate) fn teams_claims() -> Value {
    json!({"skypeid": "orgid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "scp": 1024, "csi": now(), "iat": now(),
           "exp": now() + 3600, "acsScope": "voip", "resourceId": "11111111-2222-3333-4444-555555555555",
           "tid": "99999999-8888-7777-6666-555555555555", "oid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"})
}

/// Whether `pid` runs, read from `/proc` independently of the service (not a zombie).
#[allow(dead_code)] // not every test binary counts processes
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with(['Z', 'X']))
}
