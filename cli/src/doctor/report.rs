//! What the doctor found: one [`Step`] per stage, and the [`Verdict`] (the exit code) they add up
//! to; rendered for a person ([`Report::human`]) or a script ([`Report::json`]).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// How a run ended: the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// 0: an agent was created and connected, and was disposed.
    Healthy,
    /// 1: an `ExpectedError`: the application must fix something; the remedy says what.
    MustFix,
    /// 2: a failure a retry did not fix, or an agent that never connected.
    NotFixed,
    /// 3: the doctor could not run (bad input, no Chromium, the page not built, the identity API
    /// refused the key).
    CouldNotRun,
}

impl Verdict {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::MustFix => 1,
            Self::NotFixed => 2,
            Self::CouldNotRun => 3,
        }
    }

    /// Which of two verdicts a run reports: could-not-run over must-fix (a precondition to fix
    /// says more than the failure it causes) over not-fixed over healthy.
    fn worst(self, other: Self) -> Self {
        let rank = |v| match v {
            Self::Healthy => 0,
            Self::NotFixed => 1,
            Self::MustFix => 2,
            Self::CouldNotRun => 3,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Passed.
    Ok,
    /// Failed: `verdict` says how badly.
    Failed,
    /// Not run, because an earlier step failed (its summary says why).
    Skipped,
}

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A token minted from the connection string (only when it is the token's source).
    Identity,
    /// The token, read offline: whose, which resource, scopes, expiry, the SDK's local checks.
    Token,
    /// Chromium, its sandbox, the page and the SDK version it was built with.
    Browser,
    /// `createCallAgent` with the real SDK, through the retry layer and the connect check.
    Creation,
    /// The agent's `connectionStateChanged` events, and whether it reached `Connected`.
    Connection,
    /// The agent disposed, the identity deleted if the doctor created it, the browser closed.
    Disposal,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Token => "token",
            Self::Browser => "browser",
            Self::Creation => "creation",
            Self::Connection => "connection",
            Self::Disposal => "disposal",
        }
    }
}

/// The SDK's failure, whole: code, subcode, category and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdkFailure {
    /// HTTP-like code.
    pub code: u16,
    /// The SDK's subcode (absent when it gave none).
    pub sub_code: Option<u32>,
    /// `ExpectedError`, `UnexpectedClientError`, ...
    pub category: String,
    /// The SDK's message.
    pub message: String,
}

/// One stage's result.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Which stage.
    pub stage: Stage,
    /// How it went.
    pub status: Status,
    /// What it measured, in a line.
    pub summary: String,
    /// Further lines: each check, each state change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// What to do, for a failure: the catalog's remedy when the SDK's subcode is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// The SDK's failure, when the step failed on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SdkFailure>,
    /// What a failure means for the run (absent for a step that passed or was skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The step's measurements, by name (documented in `docs/doctor.md`).
    pub facts: Map<String, Value>,
    /// How long the step took, in milliseconds.
    pub took_ms: u64,
}

impl Step {
    /// A step that passed.
    pub fn ok(stage: Stage, summary: impl Into<String>) -> Self {
        Self {
            stage,
            status: Status::Ok,
            summary: summary.into(),
            details: Vec::new(),
            remedy: None,
            error: None,
            verdict: None,
            facts: Map::new(),
            took_ms: 0,
        }
    }

    /// A step that failed, and what that means for the run.
    pub fn failed(stage: Stage, verdict: Verdict, summary: impl Into<String>) -> Self {
        Self { status: Status::Failed, verdict: Some(verdict), ..Self::ok(stage, summary) }
    }

    /// A step not run, and why.
    pub fn skipped(stage: Stage, why: impl Into<String>) -> Self {
        Self { status: Status::Skipped, ..Self::ok(stage, why) }
    }

    /// With a further line.
    #[must_use]
    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    /// With a measurement.
    #[must_use]
    pub fn fact(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.facts.insert(name.to_owned(), value.into());
        self
    }

    /// With the remedy.
    #[must_use]
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    /// With the SDK's failure.
    #[must_use]
    pub fn error(mut self, error: SdkFailure) -> Self {
        self.error = Some(error);
        self
    }

    /// With its duration.
    #[must_use]
    pub fn took(mut self, took: Duration) -> Self {
        self.took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Every step of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The JSON format's version: a change that removes or retypes a field increments it.
    pub format: u32,
    /// The verdict the steps add up to.
    pub verdict: Verdict,
    /// Its exit code.
    pub exit_code: u8,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The whole run, in milliseconds.
    pub total_ms: u64,
}

impl Report {
    /// The report of `steps`, which took `total`.
    pub fn new(steps: Vec<Step>, total: Duration) -> Self {
        let verdict = steps.iter().filter_map(|s| s.verdict).fold(Verdict::Healthy, Verdict::worst);
        let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
        Self { format: 1, verdict, exit_code: verdict.code(), steps, total_ms }
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report is plain data")
    }

    /// For a person: a line per step with ✓, ✗ or –, what was measured, and for a failure the
    /// remedy; wrapped to `width` columns; coloured if `colour`.
    pub fn human(&self, width: usize, colour: bool) -> String {
        let paint = |code: &str, text: &str| {
            if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
        };
        let mut out = String::new();
        const LABEL: usize = 12;
        for step in &self.steps {
            let mark = match step.status {
                Status::Ok => paint("32", "✓"),
                Status::Failed => paint("31", "✗"),
                Status::Skipped => paint("2", "–"),
            };
            let head = format!("{mark} {:<LABEL$}", step.stage.label());
            push_wrapped(&mut out, &head, LABEL + 2, &step.summary, width);
            for line in &step.details {
                push_wrapped(&mut out, &" ".repeat(LABEL + 2), LABEL + 4, &format!("· {line}"), width);
            }
            if let Some(e) = &step.error {
                let sub = e.sub_code.map_or_else(String::new, |s| format!("/{s}"));
                let text = format!("error {}{sub} {}: {}", e.code, e.category, e.message);
                push_wrapped(&mut out, &" ".repeat(LABEL + 2), LABEL + 2, &text, width);
            }
            if let Some(remedy) = &step.remedy {
                let text = format!("{} {remedy}", paint("1", "what to do:"));
                push_wrapped(&mut out, &" ".repeat(LABEL + 2), LABEL + 2, &text, width);
            }
        }
        let verdict = match self.verdict {
            Verdict::Healthy => paint("32", "healthy"),
            Verdict::MustFix => paint("31", "the application must fix something (see above)"),
            Verdict::NotFixed => paint("31", "a failure a retry did not fix"),
            Verdict::CouldNotRun => paint("31", "the doctor could not run"),
        };
        let total = crate::doctor::seconds(Duration::from_millis(self.total_ms));
        out.push_str(&format!("{verdict}: exit {} after {total}\n", self.exit_code));
        out
    }
}

/// Appends `text` after `head`, wrapped at `width` columns (as counted in characters, colour
/// codes aside), continuation lines indented by `indent`.
fn push_wrapped(out: &mut String, head: &str, indent: usize, text: &str, width: usize) {
    let width = width.max(indent + 20);
    let mut line = head.to_owned();
    let mut used = visible_len(head);
    let mut first = true;
    for word in text.split(' ') {
        let len = visible_len(word);
        if !first && used + 1 + len > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            used = indent;
            first = true;
        }
        if !first {
            line.push(' ');
            used += 1;
        }
        line.push_str(word);
        used += len;
        first = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Characters a terminal shows: ANSI colour sequences do not count.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let steps = vec![
            Step::ok(Stage::Token, "for 8:acs:r_u, resource r, scopes voip; expires in 59 min")
                .fact("scopes", "voip"),
            Step::failed(Stage::Creation, Verdict::MustFix, "the SDK refused the token")
                .error(SdkFailure {
                    code: 403,
                    sub_code: Some(40229),
                    category: "ExpectedError".into(),
                    message: "CallAgent must be created only with ACS token".into(),
                })
                .remedy("Use an Azure Communication Services user token to create a CallAgent; a Teams user's token is for a TeamsCallAgent, and a long remedy wraps at the width."),
            Step::skipped(Stage::Connection, "no agent"),
        ];
        Report::new(steps, Duration::from_millis(1500))
    }

    #[test]
    fn the_worst_verdict_is_the_exit_code() {
        assert_eq!(sample().exit_code, 1);
        let steps = vec![
            Step::failed(Stage::Connection, Verdict::NotFixed, "never connected"),
            Step::failed(Stage::Disposal, Verdict::CouldNotRun, "could not delete"),
        ];
        assert_eq!(Report::new(steps, Duration::ZERO).exit_code, 3);
        assert_eq!(Report::new(vec![Step::ok(Stage::Token, "fine")], Duration::ZERO).exit_code, 0);
        // A precondition to fix says more than the failure it causes, in either order.
        let must_fix = || Step::failed(Stage::Token, Verdict::MustFix, "expired");
        let not_fixed = || Step::failed(Stage::Disposal, Verdict::NotFixed, "could not dispose");
        assert_eq!(Report::new(vec![must_fix(), not_fixed()], Duration::ZERO).exit_code, 1);
        assert_eq!(Report::new(vec![not_fixed(), must_fix()], Duration::ZERO).exit_code, 1);
    }

    #[test]
    fn human_output_fits_80_columns_and_is_plain_off_a_terminal() {
        let text = sample().human(80, false);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?} is {} wide", line.chars().count());
        }
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("✗ creation"), "{text}");
        assert!(text.contains("error 403/40229 ExpectedError"), "{text}");
        assert!(text.contains("exit 1 after 1.5 s"), "{text}");
        let coloured = sample().human(80, true);
        assert!(coloured.contains("\x1b[31m✗"), "{coloured}");
        for line in coloured.lines() {
            assert!(visible_len(line) <= 80, "{line:?}");
        }
    }

    #[test]
    fn json_is_one_stable_object() {
        let json: Value = serde_json::from_str(&sample().json()).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["verdict"], "must_fix");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["steps"][1]["stage"], "creation");
        assert_eq!(json["steps"][1]["status"], "failed");
        assert_eq!(json["steps"][1]["error"]["sub_code"], 40229);
        assert_eq!(json["steps"][0]["facts"]["scopes"], "voip");
        assert_eq!(json["steps"][2]["status"], "skipped");
        assert_eq!(json["total_ms"], 1500);
    }
}
