//! The demo upstream: a page, an API route and a tracking pixel, as the apps behind an edge
//! would serve them. Used by the quick start, the compose file and the tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Requests the demo upstream served, by kind.
#[derive(Default)]
pub struct DemoCounts {
    pub pages: AtomicU64,
    pub api: AtomicU64,
    pub scripts: AtomicU64,
    pub beacons: AtomicU64,
}

/// A 1x1 transparent GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn router(counts: Arc<DemoCounts>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/orders", get(orders).post(create_order))
        .route("/px/{file}", get(pixel_script))
        .route("/p/{file}", get(pixel_beacon))
        .route("/demo/stats", get(stats))
        .with_state(counts)
}

async fn page(State(c): State<Arc<DemoCounts>>) -> Html<&'static str> {
    c.pages.fetch_add(1, Ordering::Relaxed);
    Html(
        "<!doctype html><title>Demo shop</title><h1>Demo shop</h1>\
         <p>Orders: <a href=\"/api/orders\">/api/orders</a></p>\
         <script src=\"/px/demo-pixel.js\"></script>\n",
    )
}

async fn orders(State(c): State<Arc<DemoCounts>>) -> Json<serde_json::Value> {
    c.api.fetch_add(1, Ordering::Relaxed);
    Json(json!({"orders": [{"id": 1, "total": "12.50"}, {"id": 2, "total": "7.00"}]}))
}

async fn create_order(
    State(c): State<Arc<DemoCounts>>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    c.api.fetch_add(1, Ordering::Relaxed);
    (axum::http::StatusCode::CREATED, Json(json!({"id": 3})))
}

async fn pixel_script(State(c): State<Arc<DemoCounts>>, Path(file): Path<String>) -> Response {
    let Some(id) = file.strip_suffix(".js") else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    c.scripts.fetch_add(1, Ordering::Relaxed);
    let js = format!("(function(){{new Image().src='/p/{id}.gif?e=view&u='+encodeURIComponent(location.href);}})();\n");
    ([(header::CONTENT_TYPE, "application/javascript")], js).into_response()
}

async fn pixel_beacon(State(c): State<Arc<DemoCounts>>, Path(file): Path<String>) -> Response {
    if !file.ends_with(".gif") {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    c.beacons.fetch_add(1, Ordering::Relaxed);
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        GIF,
    )
        .into_response()
}

async fn stats(State(c): State<Arc<DemoCounts>>) -> Json<serde_json::Value> {
    Json(json!({
        "pages": c.pages.load(Ordering::Relaxed),
        "api": c.api.load(Ordering::Relaxed),
        "pixel_scripts": c.scripts.load(Ordering::Relaxed),
        "pixel_beacons": c.beacons.load(Ordering::Relaxed),
    }))
}
