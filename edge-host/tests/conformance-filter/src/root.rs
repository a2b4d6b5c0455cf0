//! Root context: VM and plugin configuration, properties, time, logging, metrics, shared
//! data with CAS, shared queues, ticks, foreign functions and an HTTP call from the root.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType, Status};

use crate::checks::{check, check_eq, field};
use crate::envoy::Envoy;
use crate::http::{Http, Noop};

pub const QUEUE: &str = "conformance_queue";
pub const CAS_KEY: &str = "conformance/cas";
pub const VM_STARTS_KEY: &str = "conformance/vm_starts";

#[derive(Default)]
pub struct Root {
    mode: String,
    vm_config: Vec<u8>,
    upstream: Option<String>,
    queue: u32,
    ticks: u32,
    greeting: String,
}

fn log(msg: &str) {
    let _ = hostcalls::log(LogLevel::Info, msg);
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        check(
            "root_http_call",
            status.as_deref() == Some("200") && num_headers > 0,
            format!("status {status:?}, {} body bytes", body.len()),
        );
    }
}

impl Root {
    fn metrics_checks(&self) {
        let counter = hostcalls::define_metric(MetricType::Counter, "conformance_counter");
        let again = hostcalls::define_metric(MetricType::Counter, "conformance_counter");
        check_eq("metric_define_idempotent", again.ok(), counter.ok());
        if let Ok(id) = counter {
            let before = hostcalls::get_metric(id).unwrap_or(0);
            let inc = hostcalls::increment_metric(id, 2);
            let after = hostcalls::get_metric(id).unwrap_or(0);
            check(
                "metric_counter",
                inc.is_ok() && after == before + 2,
                format!("{before} -> {after}"),
            );
            check_eq(
                "metric_counter_negative",
                hostcalls::increment_metric(id, -1).err(),
                Some(Status::BadArgument),
            );
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, "conformance_gauge") {
            let _ = hostcalls::record_metric(id, 10);
            let _ = hostcalls::increment_metric(id, -3);
            check_eq("metric_gauge", hostcalls::get_metric(id).ok(), Some(7));
        }
        if let Ok(id) = hostcalls::define_metric(MetricType::Histogram, "conformance_histogram") {
            let rec =
                hostcalls::record_metric(id, 5).and_then(|()| hostcalls::record_metric(id, 7));
            check_eq("metric_histogram_record", rec, Ok(()));
        }
        check_eq(
            "metric_unknown",
            hostcalls::get_metric(9999).err(),
            Some(Status::NotFound),
        );
    }

    fn shared_data_checks(&self) {
        check_eq(
            "shared_missing",
            self.get_shared_data("conformance/missing"),
            (None, None),
        );
        if self.get_shared_data(CAS_KEY).0.is_none() {
            check_eq(
                "shared_set_new",
                self.set_shared_data(CAS_KEY, Some(b"v1"), None),
                Ok(()),
            );
        }
        let (value, cas) = self.get_shared_data(CAS_KEY);
        check(
            "shared_get",
            value.is_some() && cas.is_some(),
            format!("{value:?} cas {cas:?}"),
        );
        let set = self.set_shared_data(CAS_KEY, Some(b"v2"), cas);
        check_eq("shared_set_with_cas", set, Ok(()));
        let (value, cas2) = self.get_shared_data(CAS_KEY);
        check_eq("shared_value_after_cas", value, Some(b"v2".to_vec()));
        check(
            "shared_cas_changes",
            cas2 != cas,
            format!("{cas:?} -> {cas2:?}"),
        );
        check_eq(
            "shared_cas_mismatch",
            self.set_shared_data(CAS_KEY, Some(b"v3"), cas),
            Err(Status::CasMismatch),
        );
        // Envoy: cas 0 is unconditional; Kong (strict): CasMismatch. The test asserts by mode.
        let cas0 = match self.set_shared_data(CAS_KEY, Some(b"v4"), None) {
            Ok(()) => "ok",
            Err(Status::CasMismatch) => "cas_mismatch",
            Err(_) => "other",
        };
        check("shared_cas0_existing", cas0 != "other", cas0);
        // Count VM starts with a CAS retry loop, as a filter sharing policy would.
        let mut tries = 0;
        loop {
            tries += 1;
            let (value, cas) = self.get_shared_data(VM_STARTS_KEY);
            let n: u32 = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let next = (n + 1).to_string();
            match self.set_shared_data(VM_STARTS_KEY, Some(next.as_bytes()), cas) {
                Ok(()) => break,
                Err(_) if tries < 10 => continue,
                Err(e) => {
                    check("shared_vm_starts", false, format!("{e:?}"));
                    break;
                }
            }
        }
    }

    fn queue_checks(&mut self) {
        let id = self.register_shared_queue(QUEUE);
        self.queue = id;
        check_eq(
            "queue_resolve",
            self.resolve_shared_queue("", QUEUE),
            Some(id),
        );
        check_eq(
            "queue_resolve_unknown",
            self.resolve_shared_queue("", "nope"),
            None,
        );
        check_eq(
            "queue_enqueue",
            self.enqueue_shared_queue(id, Some(b"hello")),
            Ok(()),
        );
        check_eq(
            "queue_dequeue",
            self.dequeue_shared_queue(id),
            Ok(Some(b"hello".to_vec())),
        );
        check_eq(
            "queue_dequeue_empty",
            self.dequeue_shared_queue(id),
            Ok(None),
        );
        check_eq(
            "queue_dequeue_unknown",
            self.dequeue_shared_queue(9999).err(),
            Some(Status::NotFound),
        );
        check_eq(
            "queue_enqueue_unknown",
            self.enqueue_shared_queue(9999, Some(b"x")).err(),
            Some(Status::NotFound),
        );
        // Delivered later through on_queue_ready.
        let _ = self.enqueue_shared_queue(id, Some(b"ready"));
    }

    fn misc_checks(&self, size: usize) {
        let config = self.get_plugin_configuration().unwrap_or_default();
        check_eq("plugin_config_size", config.len(), size);
        let text = String::from_utf8_lossy(&config).into_owned();
        if let Some(want) = field(&text, "expect_vm_config") {
            check_eq(
                "vm_config",
                String::from_utf8_lossy(&self.vm_config).into_owned(),
                want,
            );
        }
        let prop = |p: Vec<&str>| {
            self.get_property(p)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        if let Some(want) = field(&text, "expect_plugin_name") {
            check_eq(
                "property_plugin_name",
                prop(vec!["plugin_name"]),
                Some(want),
            );
        }
        if let Some(want) = field(&text, "expect_root_id") {
            check_eq(
                "property_plugin_root_id",
                prop(vec!["plugin_root_id"]),
                Some(want),
            );
        }
        check(
            "property_plugin_vm_id",
            prop(vec!["plugin_vm_id"]).is_some(),
            format!("{:?}", prop(vec!["plugin_vm_id"])),
        );
        check_eq(
            "property_unknown",
            prop(vec!["no", "such", "property"]),
            None,
        );
        check_eq(
            "property_request_on_root",
            prop(vec!["request", "path"]),
            None,
        );
        self.set_property(vec!["conformance", "root"], Some(b"r"));
        self.set_property(vec!["conformance", "root", "x", "y"], Some(b"ry"));
        check_eq(
            "property_set_root",
            prop(vec!["conformance", "root"]),
            Some("r".to_string()),
        );
        let host_now = self.get_current_time();
        let wasi_now = SystemTime::now();
        let skew = host_now
            .duration_since(wasi_now)
            .or_else(|_| wasi_now.duration_since(host_now))
            .unwrap_or_default();
        check(
            "time",
            host_now > UNIX_EPOCH && skew < Duration::from_secs(60),
            format!("skew {skew:?}"),
        );
        check(
            "log_level",
            hostcalls::get_log_level().is_ok(),
            format!("{:?}", hostcalls::get_log_level()),
        );
        let mut m: HashMap<String, u32> = HashMap::new();
        for i in 0..100 {
            m.insert(format!("k{i}"), i);
        }
        check_eq("random_hashmap", m.get("k42").copied(), Some(42));
        check_eq(
            "foreign_function",
            self.call_foreign_function("nope", None).err(),
            Some(Status::NotFound),
        );
        self.grpc_checks();
        println!("conformance: stdout line");
        log("conformance: proxy_log line");
    }
}

impl Root {
    /// gRPC is not implemented by the host: every call must answer an `Err` the SDK's
    /// `hostcalls` wrappers return (a status they do not expect makes them panic).
    fn grpc_checks(&self) {
        let call = hostcalls::dispatch_grpc_call("c", "svc", "m", vec![], None, Duration::ZERO);
        check("grpc_call_refused", call.is_err(), format!("{call:?}"));
        let stream = hostcalls::open_grpc_stream("c", "svc", "m", vec![]);
        check(
            "grpc_stream_refused",
            stream.is_err(),
            format!("{stream:?}"),
        );
        check_eq(
            "grpc_send_unknown",
            hostcalls::send_grpc_stream_message(77, None, true),
            Err(Status::NotFound),
        );
        check_eq(
            "grpc_cancel_unknown",
            hostcalls::cancel_grpc_call(77),
            Err(Status::NotFound),
        );
        check_eq(
            "grpc_close_unknown",
            hostcalls::close_grpc_stream(77),
            Err(Status::NotFound),
        );
        let status = hostcalls::get_grpc_status();
        check("grpc_status", status.is_ok(), format!("{status:?}"));
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
        self.vm_config = self.get_vm_configuration().unwrap_or_default();
        check_eq("vm_config_size", self.vm_config.len(), size);
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config).into_owned();
        self.mode = field(&text, "mode").unwrap_or_else(|| "conformance".into());
        match self.mode.as_str() {
            "noop" => return true,
            "envoy" => {
                self.greeting = field(&text, "greeting").unwrap_or_default();
                self.upstream = field(&text, "auth_upstream");
                self.set_property(crate::envoy::DEEP_PROPERTY.to_vec(), Some(b"deep-value"));
                self.set_tick_period(Duration::from_millis(10));
                log("envoy fixture: configured");
                return true;
            }
            "fail-configure" => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    "conformance: configuration rejected on purpose",
                );
                return false;
            }
            _ => {}
        }
        self.upstream = field(&text, "upstream");
        self.misc_checks(size);
        self.metrics_checks();
        self.shared_data_checks();
        self.queue_checks();
        self.set_tick_period(Duration::from_millis(10));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "conformance_ticks") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if self.mode == "envoy" {
            if self.ticks == 1 {
                log("envoy fixture: first tick");
            }
            return;
        }
        if self.ticks == 1 {
            check("on_tick", true, "first tick");
            if let Some(up) = self.upstream.clone() {
                let r = self.dispatch_http_call(
                    &up,
                    vec![
                        (":method", "GET"),
                        (":path", "/root-callout"),
                        (":authority", "conformance"),
                    ],
                    None,
                    vec![],
                    Duration::from_secs(2),
                );
                check("root_http_call_dispatch", r.is_ok(), format!("{r:?}"));
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // One notification per enqueue: earlier items may already have been dequeued.
        let item = self.dequeue_shared_queue(queue_id);
        if item == Ok(None) {
            return;
        }
        check(
            "on_queue_ready",
            queue_id == self.queue && item == Ok(Some(b"ready".to_vec())),
            format!("queue {queue_id}: {item:?}"),
        );
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.mode.as_str() {
            "noop" => Some(Box::new(Noop)),
            "envoy" => Some(Box::new(Envoy::new(
                context_id,
                self.greeting.clone(),
                self.upstream.clone().unwrap_or_default(),
            ))),
            _ => Some(Box::new(Http::default())),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
