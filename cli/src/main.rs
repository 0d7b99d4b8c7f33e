//! `callagent`: diagnose call-agent creation against an Azure Communication Services resource.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use callagent_cli::doctor::{self, Credential, Options, Progress, Quiet};
use callagent_cli::identity::{self, ConnectionString};
use callagent_cli::monitor;
use callagent_cli::token::{self, TokenSource};
use callagent_retry::sdk::AgentKind;
use callagent_websdk::{NO_EXTERNAL_HOSTS, WebSdkConfig};
use clap::{Parser, Subcommand};

/// The exit code when the command cannot run (bad input); see `callagent doctor --help`.
const COULD_NOT_RUN: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "callagent",
    version,
    about = "Diagnose call-agent creation with the real Azure Communication Services Calling SDK."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More logs on stderr: -v info, -vv debug, -vvv trace (secrets are never logged).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tells why a call agent is not created: the token, the browser, the creation with the
    /// real SDK, the connection, the disposal.
    ///
    /// The token comes from --token-file (a path, or - for standard input), else ACS_TOKEN, else
    /// it is minted from the resource's connection string (--connection-string-file, else
    /// ACS_CONNECTION_STRING): a new identity with a voip token, deleted at the end, or a token
    /// for --identity. Secrets are never taken as command-line values.
    ///
    /// Exit codes: 0 healthy (an agent was created, connected and disposed); 1 an
    /// ExpectedError (the application must fix something: the remedy says what); 2 a failure a
    /// retry did not fix, or an agent that never connected; 3 the doctor could not run (bad
    /// input, no Chromium, the page not built, the identity API refused the key).
    Doctor(DoctorArgs),
    /// Probes agent creation for each configured identity on a schedule, with the real SDK,
    /// and serves /metrics, /healthz, /readyz and /status on one address, until SIGTERM or
    /// SIGINT (docs/monitor.md).
    ///
    /// Exit codes: 0 stopped by a signal, everything cleaned up; 1 could not start (the
    /// connection string, the identity API, the browsers, the address); 2 a config error,
    /// naming the field, before anything starts.
    Monitor(MonitorArgs),
}

#[derive(Debug, clap::Args)]
struct MonitorArgs {
    /// The config file (TOML; docs/monitor.md lists every field).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Check the config and exit: 0 if it is good, 2 naming the field if not.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, clap::Args)]
struct DoctorArgs {
    /// A file holding the access token; - reads it from standard input.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A file holding the resource's connection string (else ACS_CONNECTION_STRING).
    #[arg(long, value_name = "PATH")]
    connection_string_file: Option<PathBuf>,
    /// The identity (8:acs:…): the token's, or the one to issue a token for.
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// Create a Teams user's agent (TeamsCallAgent) instead of an ACS user's.
    #[arg(long)]
    teams: bool,
    /// Print one JSON object with every step (docs/doctor.md documents it) instead of text.
    #[arg(long)]
    json: bool,
    /// Creations the retry layer may make.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    attempts: u32,
    /// How long a created agent has to reach Connected.
    #[arg(long, default_value = "10s", value_parser = duration)]
    connect_timeout: Duration,
    /// How long one creation may take.
    #[arg(long, default_value = "60s", value_parser = duration)]
    create_timeout: Duration,
    /// The Chromium binary (default: Debian's).
    #[arg(long, value_name = "PATH")]
    chromium: Option<PathBuf>,
    /// The built page (websdk/page/build.sh writes it to websdk/page/dist).
    #[arg(long, value_name = "DIR")]
    page_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for the identity API.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Map every host but loopback away in the browser (for tests in an isolated network).
    #[arg(long, hide = true)]
    no_external_hosts: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 10s, 1m30s)"))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err("must be more than zero and at most 1h".into());
    }
    Ok(d)
}

/// A spinner on stderr while a step waits.
struct Spinner(Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Spinner {
    fn waiting(&self, what: &str) {
        let bar = indicatif::ProgressBar::new_spinner().with_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn done(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            bar.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { COULD_NOT_RUN } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = match cli.verbose {
        0 => tracing::Level::ERROR,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    // As users set it up: `log` records of dependencies are forwarded too.
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callagent: cannot start the async runtime: {e}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    match cli.command {
        Command::Doctor(args) => runtime.block_on(doctor_command(args)),
        Command::Monitor(args) => runtime.block_on(monitor_command(args)),
    }
}

async fn doctor_command(args: DoctorArgs) -> ExitCode {
    let credential = match credential(&args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("callagent doctor: {message}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    let defaults = WebSdkConfig::default();
    let options = Options {
        kind: if args.teams { AgentKind::Teams } else { AgentKind::Acs },
        chromium: args.chromium.unwrap_or(defaults.chromium),
        page_dir: args.page_dir.unwrap_or(defaults.page_dir),
        attempts: args.attempts,
        connect_timeout: args.connect_timeout,
        create_timeout: args.create_timeout,
        host_resolver_rules: args.no_external_hosts.then(|| NO_EXTERNAL_HOSTS.to_owned()),
    };
    let spinner = Spinner(Mutex::new(None));
    let progress: &dyn Progress =
        if !args.json && std::io::stderr().is_terminal() { &spinner } else { &Quiet };
    let report = doctor::run(credential, &options, progress).await;
    if args.json {
        println!("{}", report.json());
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", report.human(80, colour));
    }
    ExitCode::from(report.exit_code)
}

async fn monitor_command(args: MonitorArgs) -> ExitCode {
    let config = match monitor::MonitorConfig::from_file(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callagent monitor: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: good", args.config.display());
        return ExitCode::SUCCESS;
    }
    // SIGHUP reads the file again; `run` applies what it can. Listening from here on also keeps
    // SIGHUP's default action (the process ends) from ending a monitor.
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            eprintln!("callagent monitor: could not listen for SIGHUP: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::spawn(reread_on_hangup(hangup, args.config.clone(), reload));
    match monitor::run(config, signalled(), reloads).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callagent monitor: could not start: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads `path` again on each SIGHUP and sends it to the monitor, until the monitor is gone.
async fn reread_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    path: std::path::PathBuf,
    reload: tokio::sync::mpsc::Sender<Result<monitor::MonitorConfig, monitor::ConfigError>>,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
        if reload.send(monitor::MonitorConfig::from_file(&path)).await.is_err() {
            return;
        }
    }
}

/// SIGTERM or SIGINT.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Where the token comes from, checked before anything runs: a bad input touches nothing.
fn credential(args: &DoctorArgs) -> Result<Credential, String> {
    let source = match &args.token_file {
        Some(path) => Some(TokenSource::from_arg(path)),
        None => std::env::var_os(token::ENV_VAR).is_some().then_some(TokenSource::Env),
    };
    if let Some(source) = source {
        let token = source.read().map_err(|e| e.to_string())?;
        return Ok(Credential::Token { token, identity: args.identity.clone() });
    }
    let connection = match &args.connection_string_file {
        Some(path) => ConnectionString::from_file(path),
        None if std::env::var_os(identity::ENV_VAR).is_some() => ConnectionString::from_env(),
        None => {
            return Err(format!(
                "no token: give --token-file PATH (or - for standard input), set {}, or set {} \
                 to the resource's connection string to mint one",
                token::ENV_VAR,
                identity::ENV_VAR
            ));
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(Credential::Resource { connection, identity: args.identity.clone(), ca_file: args.ca_file.clone() })
}
