//! Resending a request's serialized bytes instead of its input.
//!
//! A write whose request fails as a whole (a 500, a throttle, a dropped
//! connection, after the SDK's own attempts) is sent again by the sink's
//! retry loop. The SDK consumes the input it serializes, so keeping the items
//! for that case meant deep-copying every batch before sending it: a copy of
//! every row the worker writes, for the rare batch that fails. Instead the
//! first attempt keeps the bytes it sent (the body is shared, not copied),
//! and a retry sends those bytes again, signed afresh.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;

/// Where the body of the last request sent with [`BodySlot::capture`] is kept.
#[derive(Clone, Default)]
pub(crate) struct BodySlot(Arc<Mutex<Option<SdkBody>>>);

impl BodySlot {
    /// A request mutator (run before signing) that keeps a shared handle on
    /// the request's body.
    pub(crate) fn capture(&self) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
        let slot = self.0.clone();
        move |req| {
            let body = req.body().try_clone();
            if let Ok(mut s) = slot.lock() {
                *s = body;
            }
        }
    }

    /// Keeps `body` as if it had been captured.
    pub(crate) fn keep(&self, body: SdkBody) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(body);
        }
    }

    /// The body kept, when there is one (an in-memory body always is).
    pub(crate) fn take(&self) -> Option<SdkBody> {
        self.0.lock().ok()?.take()
    }
}

/// A request mutator (run before signing) that replaces the body the SDK
/// serialized with `body`, bytes an earlier attempt sent, and sets the
/// length to match; the request is then signed over those bytes.
pub(crate) fn replace_body(body: SdkBody) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
    move |req| {
        if let Some(b) = body.try_clone() {
            if let Some(len) = b.content_length() {
                req.headers_mut().insert("content-length", len.to_string());
            }
            *req.body_mut() = b;
        }
    }
}
