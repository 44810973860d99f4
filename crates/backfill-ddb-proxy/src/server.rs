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
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bucket::TokenBucket;
use crate::error::ProxyError;
use crate::request::{
    merge_unprocessed, parse_body, single_write_cost, unprocessed_entries, BatchWrite, WriteOp,
};
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
    mode: Mode,
    bucket: TokenBucket,
    counters: Arc<Counters>,
    client: Client<HttpConnector, Full<Bytes>>,
    request_ids: AtomicU64,
    faults: Faults,
    /// Requests seen, for choosing which ones fail.
    fault_draws: AtomicU64,
}

impl Shared {
    pub(crate) fn new(cfg: &ProxyConfig, counters: Arc<Counters>) -> Result<Shared, ProxyError> {
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
            bucket: TokenBucket::new(rate, burst),
            counters,
            client: Client::builder(TokioExecutor::new()).build_http(),
            request_ids: AtomicU64::new(0),
            faults: cfg.faults,
            fault_draws: AtomicU64::new(0),
        })
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
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(WriteOp::from_target);
    if let Some(e) = injected_failure(shared) {
        return Err(e);
    }
    match op {
        Some(WriteOp::BatchWriteItem) => batch_write(shared, &parts, body).await,
        Some(op) => single_write(shared, op, &parts, body).await,
        None => Ok(relay(shared, forward(shared, &parts, body).await?, None)),
    }
}

/// Whether this request fails on purpose: a uniform draw from the request's
/// number (splitmix64), compared with the throttle and error shares.
fn injected_failure(shared: &Shared) -> Option<ProxyError> {
    let f = shared.faults;
    if f.throttle_ratio <= 0.0 && f.server_error_ratio <= 0.0 {
        return None;
    }
    let n = shared.fault_draws.fetch_add(1, Ordering::Relaxed);
    let draw = (splitmix64(n) >> 11) as f64 / (1u64 << 53) as f64;
    if draw < f.throttle_ratio {
        Counters::add(&shared.counters.injected_throttles, 1);
        Some(ProxyError::Throttled)
    } else if draw < f.throttle_ratio + f.server_error_ratio {
        Counters::add(&shared.counters.injected_server_errors, 1);
        Some(ProxyError::InjectedServerError)
    } else {
        None
    }
}

fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn single_write(
    shared: &Shared,
    op: WriteOp,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let json = parse_body(&body)?;
    let cost = single_write_cost(op, &json)?;
    if !shared.bucket.try_take(cost) {
        Counters::add(&shared.counters.throttled_requests, 1);
        return Err(ProxyError::Throttled);
    }
    if shared.mode == Mode::Blackhole {
        shared.counters.record_accepted(cost, 1);
        let mut out = Map::new();
        if let Some(cc) = consumed_capacity(&json, table_name(&json), cost) {
            out.insert("ConsumedCapacity".into(), cc);
        }
        return Ok(json_response(
            shared,
            StatusCode::OK,
            Bytes::from(Value::Object(out).to_string()),
        ));
    }
    let up = match forward(shared, parts, body).await {
        Ok(up) => up,
        Err(e) => {
            shared.bucket.refund(cost);
            return Err(e);
        }
    };
    // DynamoDB charges a write whose condition failed; not one it refused.
    if up.status.is_success() || up.is_error("ConditionalCheckFailedException") {
        shared.counters.record_accepted(cost, 1);
    } else {
        shared.bucket.refund(cost);
    }
    Ok(relay(shared, up, None))
}

async fn batch_write(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    let json = parse_body(&body)?;
    let batch = BatchWrite::parse(&json)?;
    let costs = batch.costs();
    // An injected partial answer: only the first half may be written.
    let offered = if shared.faults.unprocessed_half && costs.len() > 1 {
        costs.len().div_ceil(2)
    } else {
        costs.len()
    };
    let admitted = shared.bucket.take_prefix(&costs[..offered]);
    if admitted > 0 && offered < costs.len() {
        Counters::add(
            &shared.counters.injected_unprocessed,
            (costs.len() - offered) as u64,
        );
    }
    if admitted == 0 {
        Counters::add(&shared.counters.throttled_requests, 1);
        return Err(ProxyError::Throttled);
    }
    let admitted_units: u64 = costs[..admitted].iter().sum();
    let deferred = batch.rest(admitted);
    let deferred_count = (costs.len() - admitted) as u64;

    if matches!(shared.mode, Mode::Blackhole | Mode::BlackholeBatches) {
        shared
            .counters
            .record_accepted(admitted_units, admitted as u64);
        Counters::add(&shared.counters.unprocessed_items_returned, deferred_count);
        let mut out = Map::new();
        out.insert("UnprocessedItems".into(), Value::Object(deferred));
        if let Some(mode) = return_consumed_capacity(&json) {
            let per_table: Vec<Value> = batch
                .units_per_table(admitted)
                .into_iter()
                .map(|(table, units)| capacity_entry(mode, &table, units))
                .collect();
            out.insert("ConsumedCapacity".into(), Value::Array(per_table));
        }
        return Ok(json_response(
            shared,
            StatusCode::OK,
            Bytes::from(Value::Object(out).to_string()),
        ));
    }

    let forwarded_body = if admitted == costs.len() {
        body
    } else {
        Bytes::from(Value::Object(batch.body_with_prefix(&json, admitted)).to_string())
    };
    let up = match forward(shared, parts, forwarded_body).await {
        Ok(up) => up,
        Err(e) => {
            shared.bucket.refund(admitted_units);
            return Err(e);
        }
    };
    if !up.status.is_success() {
        // The whole call failed: nothing was written, nothing is deferred.
        shared.bucket.refund(admitted_units);
        return Ok(relay(shared, up, None));
    }
    let mut response = match serde_json::from_slice::<Value>(&up.body) {
        Ok(Value::Object(m)) => m,
        // Not a body we can amend: relay it, and count what we admitted.
        _ => {
            shared
                .counters
                .record_accepted(admitted_units, admitted as u64);
            return Ok(relay(shared, up, None));
        }
    };
    // Items the upstream left unprocessed were not written: not charged.
    let (upstream_units, upstream_items) = match response.get("UnprocessedItems") {
        Some(Value::Object(m)) => unprocessed_entries(m)
            .map(|es| (es.iter().map(|e| e.cost).sum::<u64>(), es.len() as u64))
            .unwrap_or((0, 0)),
        _ => (0, 0),
    };
    let upstream_units = upstream_units.min(admitted_units);
    let upstream_items = upstream_items.min(admitted as u64);
    shared.bucket.refund(upstream_units);
    shared.counters.record_accepted(
        admitted_units - upstream_units,
        admitted as u64 - upstream_items,
    );
    if deferred_count == 0 {
        return Ok(relay(shared, up, None));
    }
    Counters::add(&shared.counters.unprocessed_items_returned, deferred_count);
    let unprocessed = response
        .entry("UnprocessedItems")
        .or_insert_with(|| Value::Object(Map::new()));
    if !unprocessed.is_object() {
        *unprocessed = Value::Object(Map::new());
    }
    if let Value::Object(u) = unprocessed {
        merge_unprocessed(u, deferred);
    }
    let body = Bytes::from(Value::Object(response).to_string());
    Ok(relay(shared, up, Some(body)))
}

/// An upstream answer, read whole.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Upstream {
    /// Whether this is a DynamoDB error of the given type.
    fn is_error(&self, ty: &str) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("__type")?.as_str().map(|t| t.ends_with(ty)))
            .unwrap_or(false)
    }
}

/// Sends the request to the upstream: same method, path and headers (the
/// signature included), `body` as the body.
async fn forward(shared: &Shared, parts: &Parts, body: Bytes) -> Result<Upstream, ProxyError> {
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
fn relay(shared: &Shared, up: Upstream, body: Option<Bytes>) -> Response<Full<Bytes>> {
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
fn json_response(shared: &Shared, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
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

fn table_name(json: &Map<String, Value>) -> &str {
    json.get("TableName").and_then(Value::as_str).unwrap_or("")
}

/// `TOTAL` or `INDEXES` when the request asks for consumed capacity.
fn return_consumed_capacity(json: &Map<String, Value>) -> Option<&str> {
    match json.get("ReturnConsumedCapacity").and_then(Value::as_str) {
        Some(m @ ("TOTAL" | "INDEXES")) => Some(m),
        _ => None,
    }
}

fn consumed_capacity(json: &Map<String, Value>, table: &str, units: u64) -> Option<Value> {
    return_consumed_capacity(json).map(|mode| capacity_entry(mode, table, units))
}

fn capacity_entry(mode: &str, table: &str, units: u64) -> Value {
    let mut v = json!({ "TableName": table, "CapacityUnits": units });
    if mode == "INDEXES" {
        v["Table"] = json!({ "CapacityUnits": units });
    }
    v
}
