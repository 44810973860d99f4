//! The HTTP side: accept loop, per-request handling, forwarding.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::{Budget, TableLimit};
use crate::bucket::TokenBucket;
use crate::error::{ProxyError, ThrottleReason};
use crate::ondemand::{self, OnDemandLimit};
use crate::partition::MAX_PARTITIONS;
use crate::request::WriteOp;
use crate::writes;
use crate::{Counters, Faults, Mode, ProxyConfig};

/// Largest request body read (DynamoDB's own limit is 16 MB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How long the upstream has to answer one request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests in flight get to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const AMZ_JSON: &str = "application/x-amz-json-1.0";

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(crate) struct Shared {
    upstream_authority: String,
    upstream_path: String,
    pub(crate) mode: Mode,
    pub(crate) budget: Budget,
    pub(crate) counters: Arc<Counters>,
    client: Client<HttpConnector, Full<Bytes>>,
    request_ids: AtomicU64,
    pub(crate) faults: Faults,
    /// Requests seen, for choosing which ones fail.
    fault_draws: AtomicU64,
    table: Option<String>,
}

impl Shared {
    /// Whether writes to `table` pay this proxy's capacity.
    pub(crate) fn prices(&self, table: &str) -> bool {
        self.table.as_deref().is_none_or(|t| t == table)
    }

    pub(crate) fn new(cfg: &ProxyConfig) -> Result<Shared, ProxyError> {
        let rate = cfg.write_capacity_per_sec;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(ProxyError::Config(format!(
                "write_capacity_per_sec must be a finite number >= 0, got {rate}"
            )));
        }
        for (name, r) in [
            ("faults.throttle_ratio", cfg.faults.throttle_ratio),
            ("faults.server_error_ratio", cfg.faults.server_error_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(ProxyError::Config(format!(
                    "{name} must be between 0 and 1, got {r}"
                )));
            }
        }
        let burst = cfg.burst_secs;
        if !(burst.is_finite() && burst >= 0.0) {
            return Err(ProxyError::Config(format!(
                "burst_secs must be a finite number >= 0, got {burst}"
            )));
        }
        check_partitions(cfg)?;
        let partitions = cfg.partition_count();
        let uri: Uri = cfg
            .upstream
            .parse()
            .map_err(|e| ProxyError::Config(format!("upstream {:?}: {e}", cfg.upstream)))?;
        if uri.scheme_str() != Some("http") {
            return Err(ProxyError::Config(format!(
                "upstream {:?} must be a plain http:// URL",
                cfg.upstream
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ProxyError::Config(format!("upstream {:?} has no host", cfg.upstream)))?
            .to_string();
        Ok(Shared {
            upstream_authority: authority,
            upstream_path: uri.path().trim_end_matches('/').to_string(),
            mode: cfg.mode,
            budget: Budget {
                table: match cfg.on_demand {
                    Some(od) => TableLimit::OnDemand(OnDemandLimit::new(od)),
                    None => TableLimit::Provisioned(TokenBucket::new(rate, burst)),
                },
                key: cfg.partition_key.clone().filter(|_| partitions > 0),
                partitions: (0..partitions)
                    .map(|_| TokenBucket::new(cfg.partition_wcu_per_sec, cfg.partition_burst_secs))
                    .collect(),
            },
            counters: Arc::new(Counters::new(partitions as usize)),
            client: Client::builder(TokioExecutor::new()).build_http(),
            request_ids: AtomicU64::new(0),
            faults: cfg.faults,
            fault_draws: AtomicU64::new(0),
            table: cfg.table.clone(),
        })
    }
}

/// Refuses partition settings that cannot work.
fn check_partitions(cfg: &ProxyConfig) -> Result<(), ProxyError> {
    if cfg.partition_key.as_deref() == Some("") {
        return Err(ProxyError::Config("partition_key must not be empty".into()));
    }
    for (name, v) in [
        ("partition_wcu_per_sec", cfg.partition_wcu_per_sec),
        ("partition_burst_secs", cfg.partition_burst_secs),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ProxyError::Config(format!(
                "{name} must be a finite number >= 0, got {v}"
            )));
        }
    }
    if let Some(od) = cfg.on_demand {
        let w = od.initial_wcu;
        if !(w.is_finite() && w >= 0.0) {
            return Err(ProxyError::Config(format!(
                "on_demand.initial_wcu must be a finite number >= 0, got {w}"
            )));
        }
    }
    match cfg.partitions {
        Some(n) if n == 0 || n > MAX_PARTITIONS => Err(ProxyError::Config(format!(
            "partitions must be between 1 and {MAX_PARTITIONS}, got {n}"
        ))),
        _ => Ok(()),
    }
}

/// Accepts connections until `shutdown`, then lets each finish its request.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
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

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match handle_inner(shared, req).await {
        Ok(r) => r,
        Err(e) => {
            let (status, body) = e.status_and_body();
            json_response(shared, status, Bytes::from(body))
        }
    }
}

async fn handle_inner(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| ProxyError::Body(e.to_string()))?
        .to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let op = target.and_then(WriteOp::from_target);
    let update_table = target == Some("DynamoDB_20120810.UpdateTable");
    if let Some(e) = injected_failure(shared, &body) {
        return Err(e);
    }
    match op {
        Some(WriteOp::BatchWriteItem) => writes::batch_write(shared, &parts, body).await,
        Some(op) => writes::single_write(shared, op, &parts, body).await,
        None if update_table => ondemand::update_table(shared, &parts, body).await,
        None => pass_through(shared, &parts, body).await,
    }
}

/// Whether this request fails on purpose: a uniform draw from the request's
/// number (splitmix64), compared with the throttle and error shares.
fn injected_failure(shared: &Shared, body: &[u8]) -> Option<ProxyError> {
    let f = shared.faults;
    if f.throttle_ratio <= 0.0 && f.server_error_ratio <= 0.0 {
        return None;
    }
    let n = shared.fault_draws.fetch_add(1, Ordering::Relaxed);
    let draw = (splitmix64(n) >> 11) as f64 / (1u64 << 53) as f64;
    if draw < f.throttle_ratio {
        Counters::add(&shared.counters.injected_throttles, 1);
        Some(ProxyError::Throttled {
            reason: ThrottleReason::TableProvisioned,
            table: named_table(body),
        })
    } else if draw < f.throttle_ratio + f.server_error_ratio {
        Counters::add(&shared.counters.injected_server_errors, 1);
        Some(ProxyError::InjectedServerError)
    } else {
        None
    }
}

/// The table a request names (`TableName`, else the first of a batch's
/// `RequestItems`), or "" when it names none or is not JSON.
fn named_table(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    v.get("TableName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| v.get("RequestItems")?.as_object()?.keys().next().cloned())
        .unwrap_or_default()
}

fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An upstream answer, read whole.
pub(crate) struct Upstream {
    pub(crate) status: StatusCode,
    headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Upstream {
    /// Whether this is a DynamoDB error of the given type.
    pub(crate) fn is_error(&self, ty: &str) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("__type")?.as_str().map(|t| t.ends_with(ty)))
            .unwrap_or(false)
    }
}

/// Sends the request to the upstream: same method, path and headers (the
/// signature included), `body` as the body. `target`, when given, replaces the request's `X-Amz-Target` (the proxy
/// asking the upstream something else on the client's behalf).
pub(crate) async fn forward(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
    target: Option<&str>,
) -> Result<Upstream, ProxyError> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme("http")
        .authority(shared.upstream_authority.as_str())
        .path_and_query(format!("{}{}", shared.upstream_path, path))
        .build()
        .map_err(|e| ProxyError::Upstream(format!("cannot build upstream URI: {e}")))?;
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(Full::new(body.clone()))
        .map_err(|e| ProxyError::Upstream(format!("cannot build upstream request: {e}")))?;
    let headers = req.headers_mut();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(t) = target {
        headers.insert(
            HeaderName::from_static("x-amz-target"),
            HeaderValue::from_str(t)
                .map_err(|e| ProxyError::Upstream(format!("bad target {t:?}: {e}")))?,
        );
    }
    Counters::add(&shared.counters.forwarded_requests, 1);
    let resp = tokio::time::timeout(UPSTREAM_TIMEOUT, shared.client.request(req))
        .await
        .map_err(|_| ProxyError::Upstream(format!("no answer within {UPSTREAM_TIMEOUT:?}")))?
        .map_err(|e| ProxyError::Upstream(error_chain(&e)))?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(UPSTREAM_TIMEOUT, body.collect())
        .await
        .map_err(|_| ProxyError::Upstream("response body timed out".into()))?
        .map_err(|e| ProxyError::Upstream(format!("reading response body: {}", error_chain(&e))))?
        .to_bytes();
    Ok(Upstream {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The upstream's answer with its status and headers; with `body` in
/// place of its own when given (length and CRC32 header recomputed).
/// Forwards a request unpriced and relays the upstream's answer as it is.
pub(crate) async fn pass_through(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    Ok(relay(
        shared,
        forward(shared, parts, body, None).await?,
        None,
    ))
}

pub(crate) fn relay(shared: &Shared, up: Upstream, body: Option<Bytes>) -> Response<Full<Bytes>> {
    let replaced = body.is_some();
    let body = body.unwrap_or(up.body);
    let len = body.len();
    let crc = replaced.then(|| crc32fast::hash(&body));
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = up.status;
    let headers = resp.headers_mut();
    for (name, value) in &up.headers {
        if !is_hop_by_hop(name) && name != CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(crc) = crc {
        headers.insert(
            HeaderName::from_static("x-amz-crc32"),
            HeaderValue::from(crc),
        );
    }
    if !headers.contains_key("x-amzn-requestid") {
        headers.insert(
            HeaderName::from_static("x-amzn-requestid"),
            request_id(shared),
        );
    }
    resp
}

/// An answer made by the proxy, shaped like DynamoDB's.
pub(crate) fn json_response(
    shared: &Shared,
    status: StatusCode,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let len = body.len();
    let crc = crc32fast::hash(&body);
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        HeaderName::from_static("x-amz-crc32"),
        HeaderValue::from(crc),
    );
    h.insert(
        HeaderName::from_static("x-amzn-requestid"),
        request_id(shared),
    );
    resp
}

fn request_id(shared: &Shared) -> HeaderValue {
    let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("BACKFILLDDBPROXY{n:036}"))
        .unwrap_or_else(|_| HeaderValue::from_static("BACKFILLDDBPROXY"))
}

/// An error and its causes, "outer: inner: innermost".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}
