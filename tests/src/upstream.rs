//! A demo upstream that records what reached it.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::Router;

use crate::serve::Server;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> (Upstream, Server) {
        let up = Upstream::default();
        let router = Router::new().fallback(record).with_state(up.clone());
        (up, Server::start(router).await)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests for exactly this path arrived.
    pub fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }
}

async fn record(State(up): State<Upstream>, req: Request) -> String {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let method = req.method().to_string();
    let body = format!("upstream saw {method} {path}");
    up.seen.lock().unwrap().push(Seen {
        method,
        path,
        headers,
    });
    body
}
