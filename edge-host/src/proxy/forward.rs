//! Per-request path: filter, forward, filter the response.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};

use super::Shared;
use crate::types::{RequestHead, ResponseHead, ResponseOutcome};
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
    let mut resp = Response::builder().status(status);
    for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        if HOP_BY_HOP.contains(&k.as_str()) || k == "content-length" {
            continue;
        }
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(full(body)).unwrap_or_else(|e| {
        tracing::warn!("filter produced an invalid response: {e}");
        let mut r = Response::new(full(Bytes::from_static(b"invalid local response")));
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        r
    })
}

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
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

fn pseudo<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            worker.finish(context);
            tracing::debug!(%peer, "reading the request body failed: {e}");
            return simple(400, &[], b"bad request body".to_vec());
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
    let up = match up.body(Full::new(body)) {
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
    let rhead = ResponseHead {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body_empty: body.is_end_stream(),
    };
    match worker.on_response(context, rhead).await {
        ResponseOutcome::Continue { headers } => {
            let mut resp = Response::builder().status(parts.status);
            for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(':')) {
                if HOP_BY_HOP.contains(&k.as_str()) {
                    continue;
                }
                resp = resp.header(k.as_str(), v.as_str());
            }
            resp.body(body.boxed()).unwrap_or_else(|e| {
                tracing::warn!("filter produced invalid response headers: {e}");
                simple(502, &[], b"invalid response headers".to_vec())
            })
        }
        ResponseOutcome::LocalResponse {
            status,
            headers,
            body,
        } => simple(status, &headers, body),
        ResponseOutcome::Paused => simple(502, &[], b"filter paused the response".to_vec()),
    }
}
