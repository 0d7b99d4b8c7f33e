//! The monitor's one address: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (a
//! browser is up to take probes) and `/status` (the last probe per identity, as JSON; never a token).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use callagent_websdk::Browsers;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Status;

/// What the endpoints read.
pub(super) struct Endpoints {
    pub(super) metrics: PrometheusHandle,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) browsers: Browsers,
}

/// Serves until `stop` turns true.
pub(super) async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let endpoints = Arc::clone(&endpoints);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoints = Arc::clone(&endpoints);
                async move { Ok::<_, Infallible>(answer(&endpoints, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn answer<B>(endpoints: &Endpoints, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", endpoints.metrics.render()),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            // A browser is up (not lost, not being restarted): probes can run. Busy slots do not
            // count: each identity's probe waits for its own, and readiness must not flap with
            // every probe.
            let up = endpoints.browsers.members().iter().any(|(_, sdk)| sdk.is_up());
            if up {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no browser can take a probe\n")
            }
        }
        "/status" => {
            let status = endpoints.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let body = serde_json::to_string(&*status).unwrap_or_else(|_| "{}".into());
            reply(StatusCode::OK, "application/json", body)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "/metrics, /healthz, /readyz or /status\n"),
    }
}
