//! Where a token comes from: a file, standard input, or the environment. Never a command-line
//! value: `/proc/PID/cmdline` is readable by every local user.
//!
//! Minting one from the resource's connection string is the [`identity`](crate::identity)
//! client's job; this module reads a token someone already has, and refuses text that is not one
//! before anything else runs.

use std::io::Read;
use std::path::{Path, PathBuf};

use callagent_retry::sdk::{AccessToken, TokenError};
use zeroize::Zeroizing;

/// The environment variable a token may come from.
pub const ENV_VAR: &str = "ACS_TOKEN";

/// The longest token file read: real tokens are under 2 KiB.
const MAX_LEN: u64 = 64 * 1024;

/// Where the token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file (`-` is standard input).
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// [`ENV_VAR`].
    Env,
}

impl TokenSource {
    /// `--token-file PATH`, where `-` is standard input.
    pub fn from_arg(path: &Path) -> Self {
        if path == Path::new("-") { Self::Stdin } else { Self::File(path.to_owned()) }
    }

    /// Where the token came from, for messages (a path or a name, never the token).
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Stdin => "standard input".to_owned(),
            Self::Env => ENV_VAR.to_owned(),
        }
    }

    /// Reads the token and checks that it is a JWT whose payload the SDK can read. Surrounding
    /// whitespace (a file's trailing newline) is dropped.
    pub fn read(&self) -> Result<AccessToken, TokenInputError> {
        let from = self.describe();
        let text = match self {
            Self::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| TokenInputError::Unreadable { from: from.clone(), reason: e.to_string() })?;
                read_bounded(file, &from)?
            }
            Self::Stdin => read_bounded(std::io::stdin().lock(), &from)?,
            Self::Env => match std::env::var(ENV_VAR) {
                Ok(text) => Zeroizing::new(text),
                Err(std::env::VarError::NotPresent) => return Err(TokenInputError::Empty { from }),
                Err(std::env::VarError::NotUnicode(_)) => return Err(TokenInputError::NotText { from }),
            },
        };
        let token = AccessToken::new(text.trim());
        if token.expose_secret().is_empty() {
            return Err(TokenInputError::Empty { from });
        }
        match token.claims() {
            Ok(_) => Ok(token),
            Err(reason) => Err(TokenInputError::NotAToken { from, reason }),
        }
    }
}

fn read_bounded(reader: impl Read, from: &str) -> Result<Zeroizing<String>, TokenInputError> {
    let mut bytes = Zeroizing::new(Vec::new());
    reader
        .take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TokenInputError::Unreadable { from: from.to_owned(), reason: e.to_string() })?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(TokenInputError::TooLarge { from: from.to_owned() });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(TokenInputError::NotText { from: from.to_owned() }),
    }
}

/// Why a token could not be read. None holds any of the token's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenInputError {
    /// The file or stream could not be read.
    #[error("cannot read the token from {from}: {reason}")]
    Unreadable {
        /// Where from.
        from: String,
        /// The system's reason.
        reason: String,
    },
    /// Nothing there.
    #[error(
        "no token in {from}: put the user's access token there (the `token` of \
         `CommunicationIdentityClient.createUserAndToken` or `getToken`)"
    )]
    Empty {
        /// Where from.
        from: String,
    },
    /// Not UTF-8 text.
    #[error(
        "the token in {from} is not text: an access token is a JWT (three base64url parts joined by `.`)"
    )]
    NotText {
        /// Where from.
        from: String,
    },
    /// Larger than any token.
    #[error("{from} holds more than 64 KiB: that is not an access token")]
    TooLarge {
        /// Where from.
        from: String,
    },
    /// Text, but not a token the SDK can read.
    #[error(
        "the token in {from} is not an access token: {reason}; pass the token itself, not a \
         connection string or a JSON answer around it"
    )]
    NotAToken {
        /// Where from.
        from: String,
        /// What is wrong with it.
        reason: TokenError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> (tempdir::Dir, TokenSource) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("token");
        std::fs::write(&path, text).unwrap();
        (dir, TokenSource::File(path))
    }

    mod tempdir {
        /// A directory removed when dropped.
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "callagent-token-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_token_file_is_read_trimmed() {
        let token = AccessToken::unsigned(&serde_json::json!({"skypeid": "acs:r_u"}));
        let (_dir, source) = file_with(&format!("{}\n", token.expose_secret()));
        assert_eq!(source.read().unwrap().expose_secret(), token.expose_secret());
    }

    #[test]
    fn text_that_is_not_a_token_is_refused_without_echoing_it() {
        for text in ["endpoint=https://x/;accesskey=c2VjcmV0", "not.a.jwt!", "{\"token\": \"abc\"}", "  \n"] {
            let (_dir, source) = file_with(text);
            let err = source.read().unwrap_err();
            assert!(
                matches!(err, TokenInputError::NotAToken { .. } | TokenInputError::Empty { .. }),
                "{err:?}"
            );
            assert!(!err.to_string().contains("c2VjcmV0") && !err.to_string().contains("abc"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let err = TokenSource::File("/nonexistent/token".into()).read().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn a_huge_file_is_refused() {
        let (_dir, source) = file_with(&"a".repeat(70_000));
        assert!(matches!(source.read().unwrap_err(), TokenInputError::TooLarge { .. }));
    }
}
