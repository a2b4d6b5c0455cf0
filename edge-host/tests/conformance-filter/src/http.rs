//! HTTP contexts: header maps, properties, bodies, local responses, HTTP calls, traps.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MetricType};

use crate::checks::{check, check_eq, escape, query, to_json};

/// `noop` mode: nothing but `Continue`.
pub struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        Action::Continue
    }
}

#[derive(Default)]
pub struct Http {
    callout: Option<u32>,
}

fn json_reply(ctx: &Http, status: u32, body: &str) -> Action {
    ctx.send_http_response(
        status,
        vec![("content-type", "application/json")],
        Some(body.as_bytes()),
    );
    Action::Pause
}

impl Http {
    fn prop(&self, path: Vec<&str>) -> Option<String> {
        self.get_property(path)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn header_checks(&self, num_headers: usize, end_of_stream: bool) {
        let all = self.get_http_request_headers();
        check_eq("http_num_headers", all.len(), num_headers);
        check(
            "http_end_of_stream",
            end_of_stream,
            format!("{end_of_stream}"),
        );
        check_eq(
            "http_pseudo_method",
            self.get_http_request_header(":method"),
            Some("GET".into()),
        );
        check_eq(
            "http_pseudo_path",
            self.get_http_request_header(":path"),
            self.prop(vec!["request", "path"]),
        );
        check_eq(
            "http_header_value",
            self.get_http_request_header("x-test"),
            Some("1".into()),
        );
        check_eq(
            "http_header_case_insensitive",
            self.get_http_request_header("X-Test"),
            Some("1".into()),
        );
        check_eq(
            "http_header_missing",
            self.get_http_request_header("x-nope"),
            None,
        );
        self.add_http_request_header("x-added", "a");
        check_eq(
            "http_add_header",
            self.get_http_request_header("x-added"),
            Some("a".into()),
        );
        self.set_http_request_header("x-test", Some("2"));
        check_eq(
            "http_replace_header",
            self.get_http_request_header("x-test"),
            Some("2".into()),
        );
        self.remove_http_request_header("x-remove-me");
        check_eq(
            "http_remove_header",
            self.get_http_request_header("x-remove-me"),
            None,
        );
        let mut map = self.get_http_request_headers();
        map.push(("x-set-map".into(), "1".into()));
        self.set_http_request_headers(map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
        check_eq(
            "http_set_map",
            self.get_http_request_header("x-set-map"),
            Some("1".into()),
        );
        check_eq(
            "http_set_map_keeps",
            self.get_http_request_header("x-added"),
            Some("a".into()),
        );
        let bytes = self.get_http_request_header_bytes("x-added");
        check_eq("http_header_bytes", bytes, Some(b"a".to_vec()));
    }

    fn property_checks(&self, expect_port: Option<String>) {
        let addr = self.prop(vec!["source", "address"]);
        check(
            "http_prop_source_address",
            addr.as_deref().is_some_and(|a| a.starts_with("127.0.0.1")),
            addr.unwrap_or_default(),
        );
        let port = self
            .get_property(vec!["source", "port"])
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_le_bytes);
        check_eq(
            "http_prop_source_port",
            port.map(|p| p.to_string()),
            expect_port,
        );
        let path = self.prop(vec!["request", "path"]).unwrap_or_default();
        check(
            "http_prop_request_path",
            path.starts_with('/'),
            path.clone(),
        );
        let url_path = self.prop(vec!["request", "url_path"]);
        check_eq(
            "http_prop_url_path",
            url_path,
            Some(path.split('?').next().unwrap_or_default().to_string()),
        );
        check_eq(
            "http_prop_host",
            self.prop(vec!["request", "host"]),
            self.get_http_request_header(":authority"),
        );
        check_eq(
            "http_prop_method",
            self.prop(vec!["request", "method"]),
            Some("GET".into()),
        );
        check_eq(
            "http_prop_scheme",
            self.prop(vec!["request", "scheme"]),
            Some("http".into()),
        );
        let protocol = self.prop(vec!["request", "protocol"]);
        check(
            "http_prop_protocol",
            protocol.is_some(),
            format!("{protocol:?}"),
        );
        let id = self.prop(vec!["request", "id"]);
        check(
            "http_prop_request_id",
            id.as_deref().is_some_and(|s| !s.is_empty()),
            format!("{id:?}"),
        );
        check_eq(
            "http_prop_request_header",
            self.prop(vec!["request", "headers", "x-test"]),
            Some("1".into()),
        );
        check_eq(
            "http_prop_unknown",
            self.prop(vec!["request", "nonsense"]),
            None,
        );
        self.set_property(vec!["conformance", "http"], Some(b"h"));
        check_eq(
            "http_set_property",
            self.prop(vec!["conformance", "http"]),
            Some("h".into()),
        );
        let deep = vec!["conformance", "deep", "a", "b", "c"];
        self.set_property(deep.clone(), Some(b"d"));
        check_eq("http_deep_property", self.prop(deep), Some("d".into()));
        check_eq(
            "http_deep_property_from_root",
            self.prop(vec!["conformance", "root", "x", "y"]),
            Some("ry".into()),
        );
        check_eq("http_request_body", self.get_http_request_body(0, 10), None);
        let (vm_starts, _) = self.get_shared_data(crate::root::VM_STARTS_KEY);
        check(
            "http_shared_from_root",
            vm_starts.is_some(),
            format!("{vm_starts:?}"),
        );
        check("http_time", self.get_current_time() > UNIX_EPOCH, "");
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        let echo = self.get_http_call_response_header("x-echo");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let headers = self.get_http_call_response_headers();
        let body = format!(
            r#"{{"token_matches":{},"num_headers":{},"headers_len":{},"num_trailers":{},"status":{},"x_echo":"{}","body":"{}"}}"#,
            self.callout == Some(token),
            num_headers,
            headers.len(),
            num_trailers,
            status.map_or("null".to_string(), |s| format!("\"{s}\"")),
            escape(&echo.unwrap_or_default()),
            escape(&String::from_utf8_lossy(&body)),
        );
        self.send_http_response(
            200,
            vec![("content-type", "application/json"), ("x-callout", "done")],
            Some(body.as_bytes()),
        );
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let route = path.split('?').next().unwrap_or_default().to_string();
        match route.as_str() {
            "/checks" => json_reply(self, 200, &to_json()),
            "/trap" => {
                #[allow(clippy::panic)]
                {
                    panic!("conformance: trap requested");
                }
            }
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/callout" => {
                let upstream = query(&path, "upstream").unwrap_or_default();
                let r = self.dispatch_http_call(
                    &upstream,
                    vec![
                        (":method", "GET"),
                        (":path", "/callout-target"),
                        (":authority", "conformance"),
                        ("x-from", "filter"),
                    ],
                    None,
                    vec![],
                    Duration::from_millis(1500),
                );
                match r {
                    Ok(token) => {
                        self.callout = Some(token);
                        Action::Pause
                    }
                    Err(e) => json_reply(self, 500, &format!(r#"{{"dispatch_error":"{e:?}"}}"#)),
                }
            }
            "/shared/get" => {
                let key = query(&path, "key").unwrap_or_default();
                let (v, cas) = self.get_shared_data(&key);
                let v = v
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default();
                json_reply(
                    self,
                    200,
                    &format!(r#"{{"value":"{}","cas":{}}}"#, escape(&v), cas.unwrap_or(0)),
                )
            }
            "/shared/set" => {
                let key = query(&path, "key").unwrap_or_default();
                let value = query(&path, "value").unwrap_or_default();
                let r = self.set_shared_data(&key, Some(value.as_bytes()), None);
                json_reply(self, 200, &format!(r#"{{"result":"{r:?}"}}"#))
            }
            _ => {
                let expect_port = self.get_http_request_header("x-expect-port");
                self.property_checks(expect_port);
                self.header_checks(num_headers, end_of_stream);
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let status = self.get_http_response_header(":status");
        self.add_http_response_header("x-conformance-response", "1");
        self.set_http_response_header(
            "x-status-seen",
            Some(status.as_deref().unwrap_or("missing")),
        );
        self.remove_http_response_header("x-remove-resp");
        let code = self
            .get_property(vec!["response", "code"])
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_le_bytes);
        self.set_http_response_header(
            "x-response-code",
            Some(&code.map(|c| c.to_string()).unwrap_or_default()),
        );
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "conformance_on_log") {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}
