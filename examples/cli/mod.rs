//! What the examples share on the command line: loopback addresses and the Prometheus exporter.
#![allow(dead_code)]

use std::net::{SocketAddr, ToSocketAddrs};

use callagent_retry::observe::HISTOGRAM_BUCKETS;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// A clap value parser: an address with a port that resolves to loopback (`127.0.0.1:9898`,
/// `[::1]:9898`, `localhost:9898`).
pub fn loopback(text: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{e}: write an address with a port, e.g. 127.0.0.1:9898 or localhost:9898"))?
        .collect();
    addrs.iter().copied().find(|a| a.ip().is_loopback()).ok_or_else(|| {
        format!("{text} is not a loopback address: metrics are served on this machine only (127.0.0.1:PORT)")
    })
}

/// Installs the Prometheus exporter, serving `/metrics` on `addr`, with the layer's histogram
/// buckets. The error says what to do about it.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), String> {
    HISTOGRAM_BUCKETS
        .into_iter()
        .try_fold(PrometheusBuilder::new().with_http_listener(addr), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
        })
        .and_then(|b| b.install())
        .map_err(|e| {
            format!(
                "cannot serve metrics on {addr}: {e}\n(is another program using the port? pick another, e.g. 127.0.0.1:9899)"
            )
        })
}
