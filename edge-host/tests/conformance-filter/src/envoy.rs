//! `envoy` mode: an HTTP context doing what filters written with the SDK typically do, for
//! tests asserting Envoy's behaviour through `edge-proxy`. Routes (by path prefix):
//! - `/body/upper`: buffers the request body (`Pause` until `end_of_stream`), then
//!   replaces it with its upper-case form.
//! - `/body/redact`: buffers the response body, then replaces it with
//!   `redacted N bytes`.
//! - `/deny`: a local 403 with body `denied` and no content-type; the response phase
//!   (which Envoy runs for local replies too) adds `x-response-phase`.
//! - `/auth`: pauses the request on an HTTP call to the `auth_upstream` cluster carrying
//!   `x-from: <x-auth header>`; resumes it when the answer echoes `let-me-in`, else
//!   answers 403.
//! - `/trap/request-body`, `/trap/response-headers`, `/trap/response-body`: panic there.
//!
//! On every request: request and response headers are logged (`#ID -> name: value`,
//! `#ID <- name: value`); `x-greeting: <greeting>` (configuration) and
//! `x-deep-property` (a four-segment property set by the root) are added to responses;
//! `x-body-calls` lists each body callback the filter saw (`q` or `r`, buffered length,
//! end of stream); request trailers get `x-trailer-seen: <x-req-trailer>`, response
//! trailers `x-filter-trailer: 1`.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

pub const DEEP_PROPERTY: [&str; 4] = ["metadata", "filter_metadata", "conformance", "key"];

pub struct Envoy {
    id: u32,
    greeting: String,
    auth_upstream: String,
    route: String,
    calls: Vec<String>,
}

impl Envoy {
    pub fn new(id: u32, greeting: String, auth_upstream: String) -> Self {
        Envoy {
            id,
            greeting,
            auth_upstream,
            route: String::new(),
            calls: Vec::new(),
        }
    }

    fn log_map(&self, arrow: &str, map: Vec<(String, String)>) {
        for (k, v) in map {
            let _ = hostcalls::log(LogLevel::Info, &format!("#{} {arrow} {k}: {v}", self.id));
        }
    }

    fn trap_at(&self, place: &str) {
        if self.route == format!("/trap/{place}") {
            #[allow(clippy::panic)]
            {
                panic!("envoy fixture: trap in {place}");
            }
        }
    }
}

impl Context for Envoy {
    fn on_http_call_response(&mut self, _token: u32, _: usize, _: usize, _: usize) {
        if self.get_http_call_response_header("x-echo").as_deref() == Some("let-me-in") {
            self.resume_http_request();
        } else {
            self.send_http_response(403, vec![("x-auth", "denied")], Some(b"forbidden"));
        }
    }
}

impl HttpContext for Envoy {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        self.route = path.split('?').next().unwrap_or_default().to_string();
        self.log_map("->", self.get_http_request_headers());
        match self.route.as_str() {
            "/deny" => {
                self.send_http_response(403, vec![("x-deny", "1")], Some(b"denied"));
                Action::Pause
            }
            "/auth" => {
                let who = self.get_http_request_header("x-auth").unwrap_or_default();
                let r = self.dispatch_http_call(
                    &self.auth_upstream,
                    vec![
                        (":method", "GET"),
                        (":path", "/auth-check"),
                        (":authority", "auth"),
                        ("x-from", who.as_str()),
                    ],
                    None,
                    vec![],
                    Duration::from_secs(5),
                );
                match r {
                    Ok(_) => Action::Pause,
                    Err(_) => {
                        self.send_http_response(500, vec![], Some(b"dispatch failed"));
                        Action::Pause
                    }
                }
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.calls
            .push(format!("q{size}{}", if end_of_stream { "e" } else { "" }));
        self.trap_at("request-body");
        if self.route != "/body/upper" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.set_http_request_body(0, size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        let seen = self
            .get_http_request_trailer("x-req-trailer")
            .unwrap_or_default();
        self.add_http_request_trailer("x-trailer-seen", &seen);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.trap_at("response-headers");
        self.log_map("<-", self.get_http_response_headers());
        self.add_http_response_header("x-response-phase", "1");
        self.add_http_response_header("x-greeting", &self.greeting);
        let deep = self
            .get_property(DEEP_PROPERTY.to_vec())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "missing".into());
        self.add_http_response_header("x-deep-property", &deep);
        self.add_http_response_header("x-body-calls", &self.calls.join(","));
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.trap_at("response-body");
        if self.route != "/body/redact" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let text = format!("redacted {size} bytes");
        self.set_http_response_body(0, size, text.as_bytes());
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _: usize) -> Action {
        self.add_http_response_trailer("x-filter-trailer", "1");
        Action::Continue
    }
}
