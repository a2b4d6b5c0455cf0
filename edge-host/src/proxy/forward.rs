//! Per-request path: filter, forward, filter the response.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

use super::body::{announce, collect, filter_body, header_pairs, BodyResult, Filtered, Frames};
use super::Shared;
use crate::types::{Direction, RequestHead, ResponseHead, ResponseOutcome};
use crate::worker::{Outcome, WorkerHandle};

pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Hop-by-hop headers, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// `resp` with `headers` less pseudo-headers and hop-by-hop ones (and less
/// `content-length` when the body is the proxy's own, so it is recomputed).
fn with_headers(
    mut resp: http::response::Builder,
    headers: &[(String, String)],
    drop_content_length: bool,
) -> http::response::Builder {
    for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        if HOP_BY_HOP.contains(&k.as_str()) || (drop_content_length && k == "content-length") {
            continue;
        }
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn simple(
    status: u16,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Response<ProxyBody> {
    let resp = with_headers(Response::builder().status(status), headers, true);
    resp.body(full(body)).unwrap_or_else(|e| {
        tracing::warn!("filter produced an invalid response: {e}");
        let mut r = Response::new(full(Bytes::from_static(b"invalid local response")));
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        r
    })
}

fn pseudo<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// A response with a body already through the filter: `content-length` recomputed from it
/// (dropped with trailers, which HTTP/1.1 sends chunked, announced in `trailer`).
fn filtered_response(
    status: http::StatusCode,
    headers: &[(String, String)],
    body: Filtered,
) -> Response<ProxyBody> {
    let mut resp = with_headers(Response::builder().status(status), headers, true);
    if let Some(names) = body.trailers.as_ref().and_then(announce) {
        resp = resp.header(http::header::TRAILER, names);
    }
    resp.body(Frames::new(body.data.into(), body.trailers).boxed())
        .unwrap_or_else(|e| {
            tracing::warn!("filter produced invalid response headers: {e}");
            simple(502, &[], b"invalid response headers".to_vec())
        })
}

pub(crate) async fn handle(
    shared: &Shared,
    worker: &WorkerHandle,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let head = RequestHead {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        authority,
        scheme: "http".into(),
        headers: header_pairs(&parts.headers)
            .into_iter()
            .filter(|(k, _)| k != "host")
            .collect(),
        source: peer,
        body_empty: body.is_end_stream(),
        protocol: protocol(parts.version),
    };
    let (context, headers) = match worker.on_request(head.clone()).await {
        Outcome::LocalResponse {
            context,
            status,
            headers,
            body,
        } => {
            worker.finish(context);
            return simple(status, &headers, body);
        }
        Outcome::Continue { context, headers } => (context, headers),
    };

    // The request body (none: nothing to run, nothing allocated).
    let body = if head.body_empty {
        Filtered::default()
    } else {
        let result = if worker.wants_body(Direction::Request) {
            filter_body(worker, context, Direction::Request, body).await
        } else {
            match collect(body).await {
                Ok(b) => BodyResult::Done(b),
                Err(e) => BodyResult::Failed(e),
            }
        };
        match result {
            BodyResult::Done(b) => b,
            BodyResult::Local {
                status,
                headers,
                body,
            } => {
                worker.finish(context);
                return simple(status, &headers, body);
            }
            BodyResult::Failed(e) => {
                worker.finish(context);
                tracing::debug!(%peer, "reading the request body failed: {e}");
                return simple(400, &[], b"bad request body".to_vec());
            }
        }
    };
    let method = pseudo(&headers, ":method").unwrap_or(&head.method);
    let path = pseudo(&headers, ":path").unwrap_or(&head.path);
    let authority = pseudo(&headers, ":authority").unwrap_or(&head.authority);
    let mut up = Request::builder()
        .method(method)
        .uri(format!("{}{}", shared.upstream, path));
    let mut xff = None;
    for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        if HOP_BY_HOP.contains(&k.as_str()) || k == "content-length" || k == "host" {
            continue;
        }
        if k == "x-forwarded-for" {
            xff = Some(v.clone());
            continue;
        }
        up = up.header(k.as_str(), v.as_str());
    }
    let ip = peer.ip().to_string();
    let xff = match xff {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    up = up
        .header("x-forwarded-for", xff)
        .header(http::header::HOST, authority);
    if let Some(names) = body.trailers.as_ref().and_then(announce) {
        up = up.header(http::header::TRAILER, names);
    }
    let up = match up.body(Frames::new(body.data.into(), body.trailers)) {
        Ok(r) => r,
        Err(e) => {
            worker.finish(context);
            tracing::warn!("cannot build the upstream request: {e}");
            return simple(400, &[], b"bad request".to_vec());
        }
    };
    let resp = match shared.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            worker.finish(context);
            tracing::warn!(upstream = %shared.upstream, "upstream request failed: {e}");
            return simple(502, &[], b"upstream unavailable".to_vec());
        }
    };
    let (parts, body) = resp.into_parts();
    let body_empty = body.is_end_stream();
    let rhead = ResponseHead {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body_empty,
    };
    match worker.on_response(context, rhead).await {
        ResponseOutcome::Continue { headers } => {
            if body_empty || !worker.wants_body(Direction::Response) {
                return streamed(parts.status, &headers, body);
            }
            match filter_body(worker, context, Direction::Response, body).await {
                BodyResult::Done(b) => filtered_response(parts.status, &headers, b),
                BodyResult::Local {
                    status,
                    headers,
                    body,
                } => simple(status, &headers, body),
                BodyResult::Failed(e) => {
                    worker.finish(context);
                    tracing::warn!(upstream = %shared.upstream, "reading the response body failed: {e}");
                    simple(502, &[], b"upstream response failed".to_vec())
                }
            }
        }
        ResponseOutcome::LocalResponse {
            status,
            headers,
            body,
        } => simple(status, &headers, body),
        ResponseOutcome::Paused => simple(502, &[], b"filter paused the response".to_vec()),
    }
}

/// The upstream response with the filter's headers and the body streamed through unseen.
fn streamed(
    status: http::StatusCode,
    headers: &[(String, String)],
    body: Incoming,
) -> Response<ProxyBody> {
    let resp = with_headers(Response::builder().status(status), headers, false);
    resp.body(body.boxed()).unwrap_or_else(|e| {
        tracing::warn!("filter produced invalid response headers: {e}");
        simple(502, &[], b"invalid response headers".to_vec())
    })
}
