//! Tokens for the probes: minted with the connection string, printed by a command the user
//! names, or fetched from the user's own token endpoint ([`endpoint`]); cached per identity and
//! replaced before they expire, or at once when the SDK refused one as expired or invalid.

pub(crate) mod endpoint;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callagent_retry::sdk::AccessToken;
use zeroize::Zeroizing;

use self::endpoint::Endpoint;
pub use self::endpoint::EndpointError;
use super::config::{TokenConfig, TokenSourceKind};
use super::metrics::{TOKEN_FAILURES, TOKENS_MINTED};
use crate::identity::{IdentityClient, IdentityError, Scope};

/// Why no token could be had. None holds a token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFailure {
    /// The identity API failed.
    #[error("the identity API: {0}")]
    Identity(#[from] IdentityError),
    /// The command could not be started, or failed.
    #[error("the token command {0}")]
    Command(String),
    /// The token endpoint failed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Where the probes' tokens come from, with a cache per identity.
pub struct Tokens {
    kind: TokenSourceKind,
    client: Option<Arc<IdentityClient>>,
    command: Vec<String>,
    command_timeout: Duration,
    /// The token endpoint, set up at start and again on a reload (or why it could not be: each
    /// fetch says so). A fetch holds its own `Arc`: a reload never waits for one.
    endpoint: RwLock<Option<Arc<Result<Endpoint, EndpointError>>>>,
    lifetime: Duration,
    refresh_before: Duration,
    cache: Mutex<HashMap<String, (AccessToken, SystemTime)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens from `config`; `client` is the identity API's (for `connection_string`). For
    /// `endpoint`, the header's value is read and TLS set up now; should that fail (the config
    /// check read the file already), every fetch fails with why, as a probe result.
    pub fn new(config: &TokenConfig, client: Option<Arc<IdentityClient>>) -> Self {
        let endpoint = (config.source == TokenSourceKind::Endpoint).then(|| {
            Endpoint::new(config).inspect_err(|e| {
                tracing::error!(target: "callagent_cli::monitor::tokens", "{e}");
            })
        });
        Self {
            endpoint: RwLock::new(endpoint.map(Arc::new)),
            kind: config.source,
            client,
            command: config.command.clone(),
            command_timeout: config.command_timeout,
            lifetime: config.lifetime,
            refresh_before: config.refresh_before,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// On a reload: reads the token endpoint's header value file again (a rotated value), and
    /// its CA file. Should that fail, the endpoint set up before stays, and the error says why.
    /// Other token sources read nothing at start: a no-op.
    pub fn reread(&self, config: &TokenConfig) -> Result<(), EndpointError> {
        if self.kind != TokenSourceKind::Endpoint {
            return Ok(());
        }
        let endpoint = Endpoint::new(config)?;
        *self.endpoint.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Ok(endpoint)));
        Ok(())
    }

    /// Keeps a token obtained elsewhere (with a created identity) for `identity`.
    pub fn keep(&self, identity: &str, token: AccessToken, expires: SystemTime) {
        self.lock().insert(identity.to_owned(), (token, expires));
        metrics::counter!(TOKENS_MINTED, "source" => self.kind.label()).increment(1);
    }

    /// Forgets `identity`'s token: the SDK refused it, so the next probe gets a new one.
    pub fn forget(&self, identity: &str) {
        self.lock().remove(identity);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AccessToken, SystemTime)>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A token for `identity` with more than `refresh_before` left: the cached one, or a new one.
    pub async fn token(&self, identity: &str) -> Result<AccessToken, TokenFailure> {
        let fresh_until = SystemTime::now() + self.refresh_before;
        if let Some((token, expires)) = self.lock().get(identity)
            && *expires > fresh_until
        {
            return Ok(token.clone());
        }
        let fetched = match self.kind {
            TokenSourceKind::ConnectionString => self.mint(identity).await,
            TokenSourceKind::Command => self.run_command(identity).await,
            TokenSourceKind::Endpoint => {
                let endpoint = self.endpoint.read().unwrap_or_else(PoisonError::into_inner).clone();
                match endpoint.as_deref() {
                    Some(Ok(endpoint)) => endpoint.fetch(identity).await.map_err(TokenFailure::from),
                    Some(Err(e)) => Err(e.clone().into()),
                    None => Err(EndpointError::Setup("the endpoint is not configured".into()).into()),
                }
            }
        };
        match fetched {
            Ok((token, expires)) => {
                self.keep(identity, token.clone(), expires);
                Ok(token)
            }
            Err(e) => {
                metrics::counter!(TOKEN_FAILURES, "source" => self.kind.label()).increment(1);
                Err(e)
            }
        }
    }

    async fn mint(&self, identity: &str) -> Result<(AccessToken, SystemTime), TokenFailure> {
        let Some(client) = &self.client else {
            return Err(TokenFailure::Command("is not configured".into()));
        };
        let issued = client.issue_token(identity, &[Scope::Voip], self.lifetime).await?;
        Ok((issued.token, issued.expires_on))
    }

    async fn run_command(&self, identity: &str) -> Result<(AccessToken, SystemTime), TokenFailure> {
        let (program, args) = self.command.split_first().expect("validated: the command is named");
        let args: Vec<String> = args.iter().map(|a| a.replace("{identity}", identity)).collect();
        let run = tokio::process::Command::new(program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(self.command_timeout, run).await {
            Err(_) => {
                return Err(TokenFailure::Command(format!("{program} ran past {:?}", self.command_timeout)));
            }
            Ok(Err(e)) => return Err(TokenFailure::Command(format!("{program} could not start: {e}"))),
            Ok(Ok(out)) => out,
        };
        let stdout = Zeroizing::new(out.stdout);
        if !out.status.success() {
            return Err(TokenFailure::Command(format!("{program} failed ({})", out.status)));
        }
        let text = std::str::from_utf8(&stdout)
            .map_err(|_| TokenFailure::Command(format!("{program} printed something other than text")))?
            .trim();
        parse_command_output(text).ok_or_else(|| {
            TokenFailure::Command(format!(
                "{program} printed neither a token nor {{\"token\": …, \"expiresOn\": …}}"
            ))
        })
    }
}

/// A token (a JWT, expiring at its `exp`), or `{"token": …, "expiresOn": RFC 3339}`.
fn parse_command_output(text: &str) -> Option<(AccessToken, SystemTime)> {
    if text.starts_with('{') {
        return parse_token_object(text.as_bytes()).ok();
    }
    let token = AccessToken::new(text);
    let expires = expiry_of(&token)?;
    Some((token, expires))
}

/// `{"token": …, "expiresOn": RFC 3339}`; without `expiresOn`, the token's `exp`. The error
/// says what is wrong, never what was there.
pub(super) fn parse_token_object(json: &[u8]) -> Result<(AccessToken, SystemTime), &'static str> {
    #[derive(serde::Deserialize)]
    struct Answer {
        // Moved into the `AccessToken` (zeroized) as it is.
        token: String,
        #[serde(rename = "expiresOn")]
        expires_on: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(json).map_err(|_| "not a JSON object with a `token` string")?;
    let token = AccessToken::new(answer.token);
    if token.expose_secret().trim().is_empty() {
        return Err("the `token` is empty");
    }
    let expires = match answer.expires_on {
        Some(at) => parse_time(&at).ok_or("`expiresOn` is not an RFC 3339 time")?,
        None => expiry_of(&token).ok_or("no `expiresOn`, and the token has no `exp` claim")?,
    };
    Ok((token, expires))
}

/// An RFC 3339 time: `Z`, or an offset (`+00:00`, as .NET writes a `DateTimeOffset`); one
/// without either is taken as UTC, as it always was.
fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(local).ok();
    }
    // `±HH:MM` (humantime would read past it in a fraction's digits).
    let cut = text.len().saturating_sub(6);
    let offset = text.get(cut..).map(str::as_bytes).filter(|o| {
        matches!(o, [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()))
    });
    let Some(offset) = offset else { return humantime::parse_rfc3339_weak(text).ok() };
    let local = &text[..cut];
    let digits = |a: u8, b: u8| u64::from(a - b'0') * 10 + u64::from(b - b'0');
    let (hh, mm) = (digits(offset[1], offset[2]), digits(offset[4], offset[5]));
    if hh > 23 || mm > 59 {
        return None;
    }
    let sign = &offset[..1];
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let offset = Duration::from_secs(hh * 3600 + mm * 60);
    match sign {
        b"+" => at.checked_sub(offset),
        _ => at.checked_add(offset),
    }
}

fn expiry_of(token: &AccessToken) -> Option<SystemTime> {
    let exp = token.claims().ok()?.exp()?;
    (exp.is_finite() && exp > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_config() -> TokenConfig {
        toml::from_str("source = \"command\"\ncommand_timeout = \"5s\"\n").unwrap()
    }

    fn jwt(exp: u64) -> AccessToken {
        AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_u", "exp": exp}))
    }

    #[test]
    fn a_command_prints_a_token_or_an_object() {
        let t = jwt(2_000_000_000);
        let (token, expires) = parse_command_output(t.expose_secret()).unwrap();
        assert_eq!(token.expose_secret(), t.expose_secret());
        assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        let object =
            format!("{{\"token\": \"{}\", \"expiresOn\": \"2033-05-18T03:33:20Z\"}}", t.expose_secret());
        let (_, expires) = parse_command_output(&object).unwrap();
        assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        assert!(parse_command_output("not a token").is_none());
        assert!(parse_command_output("{\"nope\": 1}").is_none());
    }

    #[test]
    fn expiry_times_with_an_offset() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(parse_time("2033-05-18T03:33:20Z"), Some(at));
        assert_eq!(
            parse_time("2033-05-18T03:33:20.1234567+00:00"),
            Some(at + Duration::from_nanos(123_456_700))
        );
        assert_eq!(parse_time("2033-05-18T05:33:20+02:00"), Some(at));
        assert_eq!(parse_time("2033-05-18T01:03:20-02:30"), Some(at));
        assert_eq!(parse_time("2033-05-18T03:33:20"), Some(at), "no zone: UTC");
        for bad in ["tomorrow", "", "2033-05-18T03:33:20+25:00", "2033-05-18T03:33:2é+0"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_failing_command_is_a_token_failure_that_shows_no_output() {
        let mut config = command_config();
        config.command = vec!["sh".into(), "-c".into(), "echo s3cr3t-token; exit 3".into()];
        let err = Tokens::new(&config, None).token("8:acs:x").await.unwrap_err();
        assert!(err.to_string().contains("failed (exit status: 3)"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[tokio::test]
    async fn a_command_token_is_cached_until_it_nears_expiry() {
        let far = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 7200;
        let t = jwt(far);
        let dir = std::env::temp_dir().join(format!("callagent-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("count");
        let script = format!("echo x >> {}; echo {}", count.display(), t.expose_secret());
        let mut config = command_config();
        config.command = vec!["sh".into(), "-c".into(), script];
        let tokens = Tokens::new(&config, None);
        tokens.token("8:acs:x").await.unwrap();
        tokens.token("8:acs:x").await.unwrap();
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1, "cached");
        tokens.forget("8:acs:x");
        tokens.token("8:acs:x").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&count).unwrap().lines().count(),
            2,
            "fetched again once forgotten"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
