//! The page's origin, [`ORIGIN`], served by the service itself through each page's DevTools
//! `Fetch` domain: a page loads on any browser, this machine's or another host's, with no server
//! the browser must reach, and in a secure context (an https origin), which the SDK requires of
//! any origin but `localhost`. `.invalid` never resolves (RFC 2606), so nothing else can answer
//! for it, and the requests never reach a network: each is fulfilled from memory.
//!
//! A page is served while it loads: `Fetch.enable` for this origin alone, its document and the
//! page's files answered, then `Fetch.disable`. Nothing of a token passes here (tokens are sealed
//! to their page, see `seal`), and the DevTools relay lets `Fetch.enable` and `Fetch.requestPaused`
//! through for this origin only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::fetch::{
    DisableParams, EnableParams, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern,
    RequestStage,
};
use chromiumoxide::cdp::browser_protocol::page::NavigateParams;
use futures::StreamExt;

use crate::error::WebSdkError;
pub(crate) use crate::transport::ORIGIN;
use crate::transport::{Bodies, body_marker};

/// The page's document: it loads the bundle (`page/entry.js` and the SDK) from the Cache Storage
/// of the service's browser context (one per DevTools connection, in memory), keyed by the
/// bundle's digest, fetching it (over DevTools) only when the context does not hold it yet: a
/// bundle crosses DevTools once per connection, not once per page. `BUNDLE` is the digest's
/// first 12 bytes (the cache's name), `DIGEST` all of it: a cached bundle runs only if its
/// SHA-256 is `DIGEST`, since whoever reaches the browser's DevTools while the service runs could
/// leave code there that would receive every token; one that is not is deleted and the service's
/// own fetched instead.
const DOCUMENT: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>callagent-websdk</title>
<script>
(async () => {
  const name = "callagent-websdk-BUNDLE";
  const digest = "DIGEST";
  const hex = async (blob) => Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer())),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const fetched = async () => {
    const response = await fetch("/bundle.js", { cache: "no-store" });
    if (!response.ok) throw new Error(`bundle: HTTP ${response.status}`);
    return response;
  };
  let bundle;
  try {
    const cache = await caches.open(name);
    const cached = await cache.match("/bundle.js");
    if (cached) {
      bundle = await cached.blob();
      if (await hex(bundle) !== digest) {
        bundle = undefined;
        await cache.delete("/bundle.js");
      }
    }
    if (!bundle) {
      const response = await fetched();
      await cache.put("/bundle.js", response.clone());
      for (const old of await caches.keys()) {
        if (old.startsWith("callagent-websdk-") && old !== name) await caches.delete(old);
      }
      bundle = await response.blob();
    }
  } catch {
    bundle = await (await fetched()).blob();
  }
  const script = document.createElement("script");
  script.src = URL.createObjectURL(bundle);
  document.head.append(script);
})();
</script>
"#;

/// The page's files, in memory: the document and the built page's top-level files (not its
/// `index.html`: the document is the service's own).
pub(crate) struct Site {
    /// Each file's content type, by path.
    files: HashMap<String, &'static str>,
    /// Each file's body, base64 as `Fetch.fulfillRequest` takes it (encoded once per service),
    /// for the relay to put into the answers, which carry only a marker (see `transport`).
    bodies: Bodies,
    /// Times the bundle was sent (once per connection's browser context that did not hold it yet).
    bundles_sent: AtomicU64,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("files", &self.files.len()).finish()
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl Site {
    /// Reads the built page in `dir` (`websdk/page/build.sh` writes it).
    pub(crate) fn read(dir: &Path) -> std::io::Result<Self> {
        let (mut files, mut bodies) = (HashMap::new(), HashMap::new());
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "index.html" || !entry.file_type()?.is_file() {
                continue;
            }
            bodies.insert(format!("/{name}"), B64.encode(std::fs::read(entry.path())?));
            files.insert(format!("/{name}"), content_type(&name));
        }
        let bundle = std::fs::read(dir.join("bundle.js")).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("no bundle.js in {}: build the page with websdk/page/build.sh ({e})", dir.display()),
            )
        })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bundle);
        let digest: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let document = DOCUMENT.replace("BUNDLE", &digest[..24]).replace("DIGEST", &digest);
        bodies.insert("/".to_owned(), B64.encode(document));
        files.insert("/".to_owned(), content_type("index.html"));
        Ok(Self { files, bodies: Arc::new(bodies), bundles_sent: AtomicU64::new(0) })
    }

    /// The files' bodies, for the relay (`transport::relay`).
    pub(crate) fn bodies(&self) -> Bodies {
        Arc::clone(&self.bodies)
    }

    /// The answer to a request for `url`: this origin's files only (the relay passes no other
    /// request), 404 otherwise.
    fn answer(&self, paused: &EventRequestPaused) -> FulfillRequestParams {
        let path = paused.request.url.strip_prefix(ORIGIN).unwrap_or("");
        let path = path.split(['?', '#']).next().unwrap_or("");
        let (code, content_type, body) = match self.files.get(path) {
            Some(content_type) if paused.request.method == "GET" => {
                if path == "/bundle.js" {
                    self.bundles_sent.fetch_add(1, Ordering::Relaxed);
                }
                (200, *content_type, body_marker(path))
            }
            _ => (404, "text/plain; charset=utf-8", String::new()),
        };
        let header = |name: &str, value: &str| HeaderEntry { name: name.into(), value: value.into() };
        FulfillRequestParams {
            request_id: paused.request_id.clone(),
            response_code: code,
            response_headers: Some(vec![
                header("content-type", content_type),
                header("cache-control", "no-store"),
                header("x-content-type-options", "nosniff"),
            ]),
            binary_response_headers: None,
            body: Some(body.into()),
            response_phrase: None,
        }
    }

    /// Times the bundle was sent to a browser.
    pub(crate) fn bundles_sent(&self) -> u64 {
        self.bundles_sent.load(Ordering::Relaxed)
    }

    /// Navigates `page` to the origin and serves it until `started` (the page's script has
    /// started), then stops intercepting.
    pub(crate) async fn load(
        &self,
        page: &Page,
        started: impl Future<Output = Result<(), WebSdkError>>,
    ) -> Result<(), WebSdkError> {
        let mut paused = page.event_listener::<EventRequestPaused>().await?;
        let pattern = RequestPattern {
            url_pattern: Some(format!("{ORIGIN}/*")),
            resource_type: None,
            request_stage: Some(RequestStage::Request),
        };
        page.execute(EnableParams { patterns: Some(vec![pattern]), handle_auth_requests: Some(false) })
            .await?;
        let serve = async {
            while let Some(request) = paused.next().await {
                if let Err(e) = page.execute(self.answer(&request)).await {
                    tracing::debug!(error = %e, "a page request could not be answered");
                }
            }
        };
        let loaded = async {
            page.goto(NavigateParams::new(format!("{ORIGIN}/"))).await?;
            started.await
        };
        tokio::select! {
            loaded = loaded => loaded?,
            () = serve => return Err(WebSdkError::PageLoad("the page's requests ended before it loaded".into())),
        }
        page.execute(DisableParams::default()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chromiumoxide::cdp::browser_protocol::fetch::RequestId;
    use chromiumoxide::cdp::browser_protocol::network::{Request, ResourceType};

    fn paused(url: &str, method: &str) -> EventRequestPaused {
        let request: Request = serde_json::from_value(serde_json::json!({
            "url": url, "method": method, "headers": {}, "initialPriority": "High",
            "referrerPolicy": "no-referrer"
        }))
        .unwrap();
        EventRequestPaused {
            request_id: RequestId::new("r1"),
            request,
            frame_id: "F".to_owned().into(),
            resource_type: ResourceType::Document,
            response_error_reason: None,
            response_status_code: None,
            response_status_text: None,
            response_headers: None,
            network_id: None,
            redirected_request_id: None,
        }
    }

    #[test]
    fn only_the_pages_own_files_are_served() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.js"), "window.x = 1;").unwrap();
        std::fs::write(dir.path().join("index.html"), "not ours").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/secret.txt"), "no").unwrap();
        let site = Site::read(dir.path()).unwrap();
        // The answer carries the file's marker; the relay puts in the body it names.
        let body = |r: &FulfillRequestParams| {
            let marker: &str = r.body.as_ref().unwrap().as_ref();
            let path = marker.strip_prefix("callagent-websdk-body:").expect("a marker, not the body");
            String::from_utf8(B64.decode(&site.bodies()[path]).unwrap()).unwrap()
        };
        let bundle = site.answer(&paused(&format!("{ORIGIN}/bundle.js?v=1"), "GET"));
        assert_eq!((bundle.response_code, body(&bundle).as_str()), (200, "window.x = 1;"));
        let document = body(&site.answer(&paused(&format!("{ORIGIN}/"), "GET")));
        // The bundle's digest names its cache: another bundle is never taken for it.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"window.x = 1;");
        let digest: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        assert!(document.contains(&format!("callagent-websdk-{digest}\"")), "{document}");
        // And a cached bundle runs only with all of its digest.
        let full = ring::digest::digest(&ring::digest::SHA256, b"window.x = 1;");
        let full: String = full.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(document.contains(&format!("const digest = \"{full}\";")), "{document}");
        assert!(document.contains("if (await hex(bundle) !== digest)"), "{document}");
        for (url, method) in [
            (format!("{ORIGIN}/index.html"), "GET"),
            (format!("{ORIGIN}/sub/secret.txt"), "GET"),
            (format!("{ORIGIN}/../Cargo.toml"), "GET"),
            (format!("{ORIGIN}/bundle.js"), "POST"),
            ("https://evil.example/bundle.js".to_owned(), "GET"),
        ] {
            assert_eq!(site.answer(&paused(&url, method)).response_code, 404, "{method} {url}");
        }
    }

    #[test]
    fn a_page_without_its_bundle_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Site::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("websdk/page/build.sh"), "{e}");
    }
}
