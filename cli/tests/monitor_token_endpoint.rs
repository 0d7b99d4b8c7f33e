//! `callagent monitor --check` with `[token] source = "endpoint"`: the header value file is read
//! before anything starts, a bad field exits 2 naming it, and the value is never printed. (The
//! endpoint itself is tested against a loopback stand-in in `src/monitor/tokens/endpoint/`.)

use std::path::PathBuf;
use std::process::Output;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("callagent-endpoint-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(config: &std::path::Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_callagent"))
        .args(["monitor", "--check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn the_endpoint_config_is_checked_before_anything_starts_and_never_shows_the_header_value() {
    let dir = TempDir::new();
    let value = dir.file("value", "Bearer s3cr3t-header-value\n");
    let config = |url: &str, file: &std::path::Path| {
        format!(
            "[identities]\nlist = [\"8:acs:a\", \"8:acs:b\"]\n[token]\nsource = \"endpoint\"\n\
             url = \"{url}\"\nheader_name = \"x-functions-key\"\nheader_value_file = \"{}\"\n",
            file.display()
        )
    };
    let good = dir.file("good.toml", &config("https://tokens.example/api/token?identity={identity}", &value));
    let out = check(&good);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let missing = dir.file("missing.toml", &config("https://tokens.example/{identity}", &dir.0.join("nope")));
    let plain = dir.file("plain.toml", &config("http://tokens.example/{identity}", &value));
    for (path, says) in [
        (missing, "`token.header_value_file` cannot read"),
        (plain, "`token.url` must be https: plain http is allowed to loopback only"),
    ] {
        let out = check(&path);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"), "{stdout}{stderr}");
    }
}
