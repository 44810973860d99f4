//! The HTTP side: `/metrics`, `/healthz`, `/readyz` on one small server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Health, Metrics, MetricsError, TextFormat};

/// How long requests in flight get to finish once the server is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A client that has not sent its headers by then is dropped, so idle or
/// half-open connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TEXT: &str = "text/plain; charset=utf-8";

struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `addr` (port 0 picks a free port) and serves `GET /metrics`,
/// `/healthz` and `/readyz` until `cancel` fires. Returns the address
/// actually bound and the server's task, which ends after `cancel` once the
/// requests in flight are answered (at most a couple of seconds).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let shared = Arc::new(Shared { metrics, health });
    let task = tokio::spawn(accept_loop(listener, shared, cancel));
    Ok((bound, task))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "metrics server: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
        // Reap finished connections so the set does not grow for ever.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n"));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET only\n"),
        );
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = TextFormat::from_accept(accept);
            match shared.metrics.encode(format) {
                Ok(body) => response(StatusCode::OK, format.content_type(), body),
                Err(e) => {
                    tracing::error!(error = %e, "encoding the metrics failed");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "encoding the metrics failed\n".into(),
                    )
                }
            }
        }
        "/healthz" => probe(shared.health.liveness()),
        _ => probe(shared.health.readiness()),
    }
}

fn probe(state: Result<(), String>) -> Response<Full<Bytes>> {
    match state {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, TEXT, body)
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    // Probes and scrapes must see the state of now, never a proxy's copy.
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobOutcome;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request over a fresh connection; returns status, headers and body.
    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        accept: &str,
    ) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    async fn server() -> (
        SocketAddr,
        Arc<Metrics>,
        Arc<Health>,
        CancellationToken,
        JoinHandle<()>,
    ) {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        let cancel = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            health.clone(),
            cancel.clone(),
        )
        .await
        .unwrap();
        (addr, metrics, health, cancel, task)
    }

    #[tokio::test]
    async fn port_zero_binds_a_real_port_and_metrics_are_served() {
        let (addr, metrics, _health, cancel, task) = server().await;
        assert_ne!(addr.port(), 0);
        metrics.rows_written("s.t", 42);
        metrics.job_finished("s.t", JobOutcome::Done, Duration::from_secs(1));

        let (status, head, body) = request(addr, "GET", "/metrics", "*/*").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            body.contains("backfill_rows_written_total{table=\"s.t\"} 42"),
            "{body}"
        );

        let (status, head, body) = request(
            addr,
            "GET",
            "/metrics",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(
            body.contains("backfill_jobs_total{table=\"s.t\",outcome=\"done\"} 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops when cancelled")
            .unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens after the stop"
        );
    }

    #[tokio::test]
    async fn probes_say_why_they_fail() {
        let (addr, _metrics, health, cancel, _task) = server().await;
        let (status, _, body) = request(addr, "GET", "/healthz", "*/*").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let (status, _, body) = request(addr, "GET", "/readyz", "*/*").await;
        assert_eq!(status, 503);
        assert!(body.contains("budgets not resolved"), "{body}");

        health.set_budgets_resolved();
        health.set_heartbeat_sent();
        let (status, _, body) = request(addr, "GET", "/readyz?verbose=1", "*/*").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        health.set_shutting_down();
        let (status, _, body) = request(addr, "GET", "/readyz", "*/*").await;
        assert_eq!((status, body.as_str()), (503, "shutting down\n"));
        cancel.cancel();
    }

    #[tokio::test]
    async fn liveness_fails_when_nothing_ticks() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(Duration::from_millis(300)));
        let cancel = CancellationToken::new();
        let (addr, _task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            health.clone(),
            cancel.clone(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, _, body) = request(addr, "GET", "/healthz", "*/*").await;
        assert_eq!(status, 503);
        assert!(body.contains("no worker loop has ticked"), "{body}");
        health.tick();
        let (status, _, _) = request(addr, "GET", "/healthz", "*/*").await;
        assert_eq!(status, 200);
        cancel.cancel();
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let (addr, _metrics, _health, cancel, _task) = server().await;
        let (status, _, _) = request(addr, "GET", "/", "*/*").await;
        assert_eq!(status, 404);
        let (status, _, _) = request(addr, "GET", "/metricsx", "*/*").await;
        assert_eq!(status, 404);
        let (status, head, _) = request(addr, "POST", "/metrics", "*/*").await;
        assert_eq!(status, 405);
        assert!(head.contains("allow: get, head"), "{head}");
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let err = serve(
            addr,
            Arc::new(Metrics::new()),
            Arc::new(Health::new(Duration::from_secs(1))),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
