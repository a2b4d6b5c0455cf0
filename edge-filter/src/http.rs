//! The request path: facts in, verdict out. Never parses the policy, never calls the
//! control plane, never panics.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use edge_policy::config::FailMode;
use edge_policy::facts::{bearer_subject, client_ip, parse_source_address};
use edge_policy::model::normalize_host;
use edge_policy::reply::{self, LocalReply, RULE_PROPERTY, SIMULATED_PROPERTY};
use edge_policy::request::{decide, Decision, RawRequest};

use crate::host;
use crate::metrics;
use crate::state::VmState;

pub struct Request {
    pub state: Rc<VmState>,
}

impl Context for Request {}

fn send(r: &LocalReply) -> Action {
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = (!r.body.is_empty()).then_some(r.body.as_slice());
    if let Err(e) = hostcalls::send_http_response(r.status as u32, headers, body) {
        host::error(&format!(
            "edge-filter: could not send local reply {}: {e:?}",
            r.status
        ));
        return Action::Continue;
    }
    Action::Pause
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(rt) = self.state.runtime() else {
            return Action::Continue;
        };
        let cfg = &rt.cfg;
        let Some(matcher) = self.state.matcher() else {
            metrics::inc(rt.metrics.no_policy);
            return match cfg.fail_mode {
                FailMode::Open => Action::Continue,
                FailMode::Closed => send(&reply::no_policy(cfg.retry_after_s)),
            };
        };

        let source = host::property_bytes(b"source\0address");
        let peer = source
            .as_deref()
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(parse_source_address);
        if peer.is_none() && cfg.fail_mode == FailMode::Closed {
            host::warn(&format!(
                "edge-filter: unparseable source.address {:?}; fail mode closed",
                source.as_deref().map(String::from_utf8_lossy)
            ));
            return send(&reply::no_policy(cfg.retry_after_s));
        }
        // One host call for every header the decision may need; lookups skipped for target
        // kinds the policy does not contain (the JWT is only decoded for account rules).
        let (keys, accounts) = (matcher.has_api_keys(), matcher.has_accounts());
        let (forwarded, auth) = (cfg.trusted_hops > 0, keys || accounts);
        let headers = host::RequestHeaders::fetch(&[
            Some(":method"),
            Some(":path"),
            Some(":authority"),
            forwarded.then_some("x-forwarded-for"),
            keys.then_some(rt.extractor.api_key_header.as_str()),
            auth.then_some("authorization"),
            rt.extractor.account_header.as_deref().filter(|_| accounts),
        ]);
        // Each lookup under the condition its header was kept on (a kept header of another
        // name may share the name: the account header may be the API key header).
        let xff = forwarded.then(|| headers.get("x-forwarded-for")).flatten();
        let method = headers.get(":method").unwrap_or_default();
        let path_and_query = headers.get(":path").unwrap_or_default();
        let authority = headers.get(":authority").unwrap_or_default();
        let header_keys = if keys {
            headers.get_all(&rt.extractor.api_key_header)
        } else {
            Vec::new()
        };
        // For an opaque bearer API key or a JWT's subject.
        let authorization = auth.then(|| headers.get("authorization")).flatten();
        let account = if accounts {
            match &rt.extractor.account_header {
                Some(h) => headers.get(h).map(|a| a.into_owned()),
                None => None,
            }
            .or_else(|| authorization.as_deref().and_then(bearer_subject))
        } else {
            None
        };

        let host_name = normalize_host(&authority);
        let host_name: std::borrow::Cow<'_, str> =
            if host_name.bytes().any(|b| b.is_ascii_uppercase()) {
                host_name.to_ascii_lowercase().into()
            } else {
                host_name.into()
            };
        let client = client_ip(peer, xff.as_deref(), cfg.trusted_hops);
        let req = RawRequest {
            client_ip: client,
            method: &method,
            host: &host_name,
            path_and_query: &path_and_query,
            header_keys,
            authorization: authorization.as_deref(),
            account: account.as_deref(),
        };
        // The clock only matters when some rule expires.
        let now = if matcher.has_expiring() {
            host::now_ms()
        } else {
            0
        };
        let mut key_cache = self.state.key_cache.borrow_mut();
        let decision = decide(
            &matcher,
            &rt.extractor,
            &req,
            &mut |k| key_cache.hash(k),
            now,
        );
        drop(key_cache);
        let verdict = match decision {
            Decision::Verdict(v) => v,
            Decision::RejectAmbiguous => {
                metrics::inc(rt.metrics.ambiguous);
                return send(&reply::ambiguous_path());
            }
        };

        rt.metrics.verdict(verdict.action);
        if let Some(rule) = verdict.rule {
            self.state.count(rule);
            host::set_rule_property(RULE_PROPERTY, rule);
        }
        if let Some(rule) = verdict.simulated {
            self.state.count(rule);
            host::set_rule_property(SIMULATED_PROPERTY, rule);
            metrics::inc(rt.metrics.simulated);
            host::log(
                LogLevel::Info,
                &format!(
                    "edge-filter: simulate rule {rule} would act on {method} {host_name}{path_and_query} from {}",
                    client.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into())
                ),
            );
        }
        match reply::for_verdict(&verdict, cfg.retry_after_s) {
            Some(r) => send(&r),
            None => Action::Continue,
        }
    }
}
