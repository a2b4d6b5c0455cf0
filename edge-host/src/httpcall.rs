//! Performs a guest's `proxy_http_call` for real with a hyper client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::options::{HostOptions, HostProfile};
use crate::types::{HttpCallResponse, PendingHttpCall};

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Resolves an upstream name to a base URL: a configured cluster, else (when allowed) a
/// literal `host:port`.
pub(crate) fn resolve_upstream(opts: &HostOptions, upstream: &str) -> Option<String> {
    // Kong (ngx_wasm_module) has no clusters: only `host:port`.
    if opts.profile != HostProfile::Kong {
        if let Some(url) = opts.clusters.get(upstream) {
            return Some(url.trim_end_matches('/').to_string());
        }
    }
    if !opts.allow_host_port_upstreams {
        return None;
    }
    let (host, port) = upstream.rsplit_once(':')?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    (valid_host && port.parse::<u16>().is_ok()).then(|| format!("http://{upstream}"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends the call and collects the response; `None` on any failure or on timeout (the
/// guest then sees a callout with no headers, as in Envoy).
pub(crate) async fn perform(
    client: &HttpClient,
    call: &PendingHttpCall,
) -> Option<HttpCallResponse> {
    let fut = async {
        let method = header(&call.headers, ":method")?;
        let path = header(&call.headers, ":path")?;
        let authority = header(&call.headers, ":authority")?;
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", call.base_url, path));
        for (k, v) in call.headers.iter().filter(|(k, _)| !k.starts_with(':')) {
            req = req.header(k.as_str(), v.as_str());
        }
        req = req.header(http::header::HOST, authority);
        let req = req.body(Full::new(Bytes::from(call.body.clone()))).ok()?;
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(upstream = %call.upstream, "http call failed: {e}");
                return None;
            }
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let collected = resp.into_body().collect().await.ok()?;
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out = HttpCallResponse::new(status, headers, collected.to_bytes().to_vec());
        out.trailers = trailers;
        Some(out)
    };
    match tokio::time::timeout(call.timeout, fut).await {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!(upstream = %call.upstream, "http call timed out");
            None
        }
    }
}
