//! Admin endpoint: `GET /stats` (Prometheus text of the plugin metrics), `GET /ready`.

use std::future::Future;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::forward::{simple, ProxyBody};
use crate::plugin::Plugin;

fn route(plugin: &Plugin, req: &Request<hyper::body::Incoming>) -> Response<ProxyBody> {
    let text = |s: String| {
        simple(
            200,
            &[("content-type".into(), "text/plain; version=0.0.4".into())],
            s.into_bytes(),
        )
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/stats") => text(plugin.prometheus()),
        (&Method::GET, "/ready") => text("ready\n".into()),
        _ => simple(404, &[], b"not found\n".to_vec()),
    }
}

/// Serves the admin endpoint until `shutdown` completes.
pub async fn serve_admin(
    plugin: Plugin,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let plugin = plugin.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let r = route(&plugin, &req);
                        async move { Ok::<_, std::convert::Infallible>(r) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}
