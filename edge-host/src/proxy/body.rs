//! Bodies through the filter: frames are read one at a time and handed to the filter as
//! Envoy delivers them (a chunk with `end_of_stream`, an empty chunk when the end comes
//! without data, or the trailers); what the filter lets through is collected and forwarded
//! once the stream ended. Also [`Frames`], the body type of what `edge-proxy` sends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::types::{DataOutcome, Direction, HttpContextId};
use crate::worker::WorkerHandle;

/// A body already in memory: its data, then its trailers if any. Without trailers the size
/// is exact (HTTP/1.1 gets a `content-length`); with them it is unknown (chunked).
#[derive(Debug, Default)]
pub(crate) struct Frames {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Frames {
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Frames {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.trailers {
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// Header pairs of an `http` map (values lossily decoded).
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Trailer pairs as an `http` map; pseudo-headers and invalid pairs are dropped.
pub(crate) fn trailer_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| !k.starts_with(':')) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.append(k, v);
        }
    }
    map
}

/// The `trailer` header announcing `trailers` (HTTP/1.1 sends only announced ones).
pub(crate) fn announce(trailers: &HeaderMap) -> Option<String> {
    let mut names: Vec<&str> = trailers.keys().map(|k| k.as_str()).collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

/// A body after the filter: what to forward.
#[derive(Debug, Default)]
pub(crate) struct Filtered {
    pub data: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

/// How a body phase ended.
pub(crate) enum BodyResult {
    Done(Filtered),
    /// The filter answered with a local response (or the fail mode did).
    Local {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Reading the body failed.
    Failed(hyper::Error),
}

/// Reads `body` to its end, running each frame through the filter for context `ctx`.
pub(crate) async fn filter_body(
    worker: &WorkerHandle,
    ctx: HttpContextId,
    dir: Direction,
    mut body: Incoming,
) -> BodyResult {
    let mut out = Filtered::default();
    // Received since the filter last let data through: forwarded as is if the filter goes
    // away (fail open).
    let mut raw: Vec<u8> = Vec::new();
    loop {
        let (outcome, end, raw_trailers) = match body.frame().await {
            None => (
                worker.on_body(ctx, dir, Bytes::new(), true).await,
                true,
                None,
            ),
            Some(Err(e)) => return BodyResult::Failed(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    let eos = body.is_end_stream();
                    raw.extend_from_slice(&chunk);
                    (worker.on_body(ctx, dir, chunk, eos).await, eos, None)
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(t) => {
                        let pairs = header_pairs(&t);
                        (worker.on_trailers(ctx, dir, pairs).await, true, Some(t))
                    }
                    Err(_) => continue,
                },
            },
        };
        match outcome {
            DataOutcome::Continue { data, trailers } => {
                out.data.extend_from_slice(&data);
                raw.clear();
                if raw_trailers.is_some() {
                    out.trailers = Some(trailer_map(&trailers));
                }
            }
            DataOutcome::Buffer | DataOutcome::Paused => {}
            DataOutcome::LocalResponse {
                status,
                headers,
                body,
            } => {
                return BodyResult::Local {
                    status,
                    headers,
                    body,
                }
            }
            DataOutcome::Unfiltered => {
                out.data.append(&mut raw);
                out.trailers = raw_trailers;
                if !end {
                    match body.collect().await {
                        Ok(rest) => {
                            out.trailers = rest.trailers().cloned();
                            out.data.extend_from_slice(&rest.to_bytes());
                        }
                        Err(e) => return BodyResult::Failed(e),
                    }
                }
                return BodyResult::Done(out);
            }
        }
        if end {
            return BodyResult::Done(out);
        }
    }
}

/// Reads `body` to its end without the filter (it has no body callbacks).
pub(crate) async fn collect(body: Incoming) -> Result<Filtered, hyper::Error> {
    let c = body.collect().await?;
    let trailers = c.trailers().cloned();
    Ok(Filtered {
        data: c.to_bytes().to_vec(),
        trailers,
    })
}
