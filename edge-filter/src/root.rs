//! The root context: configuration, policy sync, sharing between VMs, hit reports.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use edge_policy::config::FilterConfig;
use edge_policy::facts::Extractor;
use edge_policy::lease;
use edge_policy::matcher::{Pieces, Update};
use edge_policy::report::{EdgeReport, RuleHits};
use edge_policy::seal::{ReadAt, Seal};
use edge_policy::shared::PART_LEN;
use edge_policy::sync::{classify, next_poll_ms, poll_path, Backoff, SyncOutcome, Trust};
use edge_policy::wire;
use edge_policy::Matcher;
use proxy_wasm::types::BufferType;

use crate::http::Request;
use crate::metrics::{self, Metrics};
use crate::state::{Runtime, VmState};
use crate::{host, shared};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Sync,
    Report,
}

pub struct Root {
    state: Rc<VmState>,
    /// Random id of this VM (lease owner, report boot id).
    vm_id: u64,
    backoff: Backoff,
    next_sync_ms: u64,
    /// When the sync call in flight (or the last one) was sent.
    sync_sent_ms: u64,
    next_report_ms: u64,
    /// Outstanding callouts: (token, kind).
    calls: Vec<(u32, Call)>,
    /// A report that was sent but not acknowledged; re-sent as is (same seq).
    pending_report: Option<Vec<u8>>,
    report_seq: u64,
    /// Whether the last sync was refused for the token (logged once per streak).
    unauthorized: bool,
    /// Why the last answer's seal was refused (logged once per streak and reason).
    rejected: Option<&'static str>,
    /// The shared snapshot (publication id) this VM last decoded.
    shared_snapshot: Option<u64>,
}

/// The body of the sync response being handled, read a slice at a time ([`PART_LEN`] bytes
/// when decoding): a big snapshot never has to be copied into the VM whole.
struct ResponseBody {
    size: usize,
}

impl ReadAt for ResponseBody {
    fn len(&self) -> usize {
        self.size
    }

    fn read_at(&mut self, start: usize, len: usize, out: &mut Vec<u8>) -> Result<(), String> {
        if len == 0 {
            out.clear();
            return Ok(());
        }
        match hostcalls::get_buffer(BufferType::HttpCallResponseBody, start, len) {
            Ok(Some(bytes)) if bytes.len() == len => {
                *out = bytes;
                Ok(())
            }
            Ok(_) => Err(format!("response body ends before byte {}", start + len)),
            Err(e) => Err(format!("reading the response body: {e:?}")),
        }
    }
}

/// Apply shared deltas (wire-encoded) in order, skipping those already applied; stops at
/// the first one that does not follow.
fn apply_deltas(m: &mut Matcher, deltas: &[Vec<u8>]) {
    for bytes in deltas {
        match Matcher::decode_update(bytes) {
            Ok(Update::Delta(d)) if d.version <= m.version() => continue,
            Ok(Update::Delta(d)) => {
                if m.apply_delta(&d).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

impl Root {
    pub fn new(_context_id: u32) -> Root {
        Root {
            state: Rc::new(VmState::default()),
            vm_id: host::random_u64(),
            backoff: Backoff::new(250, 15_000),
            next_sync_ms: 0,
            sync_sent_ms: 0,
            next_report_ms: 0,
            calls: Vec::new(),
            pending_report: None,
            report_seq: 0,
            unauthorized: false,
            rejected: None,
            shared_snapshot: None,
        }
    }

    fn in_flight(&self, kind: Call) -> bool {
        self.calls.iter().any(|(_, k)| *k == kind)
    }

    /// Pick up a policy another VM published: apply its shared deltas in place when this VM
    /// is on the shared chain, else decode the shared snapshot (and the deltas on top).
    fn adopt_shared(&mut self) {
        let Some(announced) = shared::announced() else {
            return;
        };
        let (shared_version, base) = (announced.version, announced.base);
        let mine = self.state.version();
        if shared_version == mine && self.state.matcher().is_some() {
            return;
        }
        let deltas = shared::shared_deltas();
        let taken = self.state.matcher.borrow_mut().take();
        if let Some(mut m) = taken {
            if base <= mine && mine < shared_version {
                // No other reference exists outside a request, so this does not copy.
                let before = m.version();
                apply_deltas(Rc::make_mut(&mut m), &deltas);
                let reached = m.version();
                *self.state.matcher.borrow_mut() = Some(m);
                if reached != before {
                    self.installed();
                }
                if reached == shared_version {
                    return;
                }
            } else {
                *self.state.matcher.borrow_mut() = Some(m);
            }
        }
        // Decode the snapshot only when it is not the one this VM already tried.
        if self.shared_snapshot == Some(announced.snapshot) && self.state.matcher().is_some() {
            return;
        }
        self.shared_snapshot = Some(announced.snapshot);
        match Matcher::decode_pieces(&mut shared::SharedParts(announced)) {
            Ok(Update::Snapshot(mut m)) => {
                apply_deltas(&mut m, &deltas);
                if m.version() > mine || self.state.matcher().is_none() {
                    self.install(*m);
                }
            }
            Ok(Update::Delta(_)) => {
                host::error("edge-filter: shared policy holds a delta; ignored")
            }
            // Replaced while this VM read it: the next tick reads the new one.
            Err(_) if shared::announced().map(|a| a.snapshot) != Some(announced.snapshot) => {
                self.shared_snapshot = None;
            }
            Err(e) => host::error(&format!(
                "edge-filter: shared policy is malformed ({e}); keeping version {}",
                self.state.version()
            )),
        }
    }

    fn install(&self, m: Matcher) {
        *self.state.matcher.borrow_mut() = Some(Rc::new(m));
        self.installed();
    }

    /// Metrics and log line for the matcher just installed.
    fn installed(&self) {
        let Some(m) = self.state.matcher() else {
            return;
        };
        let (version, rules) = (m.version(), m.len());
        if let Some(rt) = self.state.runtime() {
            metrics::set(rt.metrics.policy_version, version);
        }
        host::info(&format!(
            "edge-filter: enforcing policy version {version} ({rules} rules)"
        ));
    }

    /// Take or renew the sync lease; true when this VM leads. Called on every tick, also
    /// while this VM's long-poll is in flight, so no other VM starts polling meanwhile.
    fn lead(&self, rt: &Runtime, now: u64) -> bool {
        let (leads, moved) = shared::try_lead(self.vm_id, now, lease::lease_ms(&rt.cfg.sync));
        if moved {
            metrics::inc(rt.metrics.lease_moves);
            metrics::set(rt.metrics.leader, self.vm_id & 0xffff_ffff);
            host::info(&format!(
                "edge-filter: worker {:016x} now syncs the policy for edge {:?}",
                self.vm_id, rt.cfg.edge_id
            ));
        }
        leads
    }

    fn dispatch_sync(&mut self, rt: &Runtime, now: u64) {
        let cfg = &rt.cfg;
        let held = self.state.held_version();
        let version = held.unwrap_or(0);
        let path = poll_path(
            &cfg.control_plane.policy_path,
            held,
            cfg.sync.long_poll_wait_s,
        );
        let auth = format!("Bearer {}", cfg.edge_token);
        let etag = format!("\"{version}\"");
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", cfg.control_plane.authority.as_str()),
            ("authorization", auth.as_str()),
            ("accept", wire::CONTENT_TYPE),
        ];
        if held.is_some() {
            headers.push(("if-none-match", etag.as_str()));
        }
        let timeout = Duration::from_millis(
            cfg.sync.long_poll_wait_s as u64 * 1000 + cfg.sync.timeout_margin_ms as u64,
        );
        match hostcalls::dispatch_http_call(
            &cfg.control_plane.cluster,
            headers,
            None,
            vec![],
            timeout,
        ) {
            Ok(token) => {
                self.calls.push((token, Call::Sync));
                self.sync_sent_ms = now;
                metrics::inc(rt.metrics.sync_sent);
            }
            Err(e) => {
                host::error(&format!(
                    "edge-filter: cannot call control plane upstream {:?} ({e:?}); check control_plane.cluster",
                    cfg.control_plane.cluster
                ));
                self.sync_failed(rt, now);
            }
        }
    }

    fn sync_failed(&mut self, rt: &Runtime, now: u64) {
        metrics::inc(rt.metrics.sync_failed);
        self.next_sync_ms = now + self.backoff.fail(host::random_u64());
    }

    fn on_sync_response(&mut self, rt: &Runtime, body_size: usize) {
        let now = host::now_ms();
        let status = host::call_response_header(":status");
        let mut body = ResponseBody { size: body_size };
        let version = self.state.version();
        let trust = Trust {
            keys: &rt.trust,
            now_ms: now,
            max_age_s: rt.cfg.control_plane.max_policy_age_s,
        };
        match classify(
            status.as_deref(),
            &mut body,
            self.state.held_version(),
            &trust,
        ) {
            SyncOutcome::Update(msg, seal) => {
                if self.rejected.take().is_some() {
                    host::info("edge-filter: policy answers verify again");
                }
                if let Err(reason) = self.apply(msg, &seal, &mut body) {
                    host::error(&format!(
                        "edge-filter: policy update rejected ({reason}); keeping version {version}"
                    ));
                    self.sync_failed(rt, now);
                    return;
                }
                metrics::inc(rt.metrics.sync_ok);
                // A big snapshot can take longer than the lease: renew it at once, so no
                // other VM starts polling while this one goes on.
                self.lead(rt, host::now_ms());
                self.sync_ok(rt, now, true);
            }
            SyncOutcome::NotModified => {
                metrics::inc(rt.metrics.sync_ok);
                self.sync_ok(rt, now, false);
            }
            SyncOutcome::Unauthorized(code) => {
                metrics::inc(rt.metrics.sync_unauthorized);
                if !self.unauthorized {
                    host::error(&format!(
                        "edge-filter: control plane refused the edge token (HTTP {code}) for edge {:?}; \
                         check edge_token; keeping policy version {version}",
                        rt.cfg.edge_id
                    ));
                }
                self.unauthorized = true;
                self.sync_failed(rt, now);
            }
            SyncOutcome::Rejected(e) => {
                metrics::inc(rt.metrics.policy_rejected);
                if self.rejected != Some(e.reason()) {
                    host::error(&format!(
                        "edge-filter: policy answer refused ({e}); keeping policy version {version}"
                    ));
                }
                self.rejected = Some(e.reason());
                self.sync_failed(rt, now);
            }
            SyncOutcome::Failed(reason) => {
                host::warn(&format!(
                    "edge-filter: policy sync failed ({reason}); keeping policy version {version}"
                ));
                self.sync_failed(rt, now);
            }
        }
    }

    fn sync_ok(&mut self, rt: &Runtime, now: u64, changed: bool) {
        if self.unauthorized {
            host::info("edge-filter: control plane accepts the edge token again");
        }
        self.unauthorized = false;
        self.backoff.reset();
        self.next_sync_ms = next_poll_ms(&rt.cfg.sync, self.sync_sent_ms, now, changed);
    }

    /// Apply a new (verified) policy here and publish it to the other VMs: what is shared
    /// is the bare message, without the seal, and only once the seal held.
    fn apply(
        &mut self,
        update: Update,
        seal: &Seal,
        body: &mut ResponseBody,
    ) -> Result<(), String> {
        match update {
            // Shared as received, part by part: the message is already an encoded snapshot.
            Update::Snapshot(m) => {
                let version = m.version();
                let mut message = seal.message(body, PART_LEN);
                let shared = shared::publish_snapshot(host::random_u64(), version, |part| {
                    let mut piece = Vec::new();
                    let mut i = 0;
                    while message.piece(i, &mut piece)? {
                        part(&piece)?;
                        i += 1;
                    }
                    Ok(())
                });
                if let Err(e) = shared {
                    host::warn(&format!("edge-filter: could not share policy version {version} with other workers: {e}"));
                }
                self.install(*m);
            }
            Update::Delta(d) => {
                let mut m = self
                    .state
                    .matcher
                    .borrow_mut()
                    .take()
                    .ok_or("delta without a base policy")?;
                // In place: no request holds the matcher between callbacks, so no copy.
                let applied = Rc::make_mut(&mut m)
                    .apply_delta(&d)
                    .map_err(|e| e.to_string());
                *self.state.matcher.borrow_mut() = Some(m);
                applied?;
                let version = d.version;
                let mut bytes = Vec::new();
                body.read_at(
                    seal.message_start,
                    body.size - seal.message_start,
                    &mut bytes,
                )?;
                // Other VMs apply the same delta; a fresh snapshot only when the log is full,
                // written from the matcher a part at a time.
                let published = match shared::publish_delta(&bytes, d.since, version) {
                    Ok(true) => Ok(()),
                    Ok(false) => match self.state.matcher() {
                        Some(m) => shared::publish_snapshot(host::random_u64(), version, |part| {
                            m.encode_snapshot_pieces(PART_LEN, part)
                        }),
                        None => Ok(()),
                    },
                    Err(e) => Err(format!("{e:?}")),
                };
                if let Err(e) = published {
                    host::warn(&format!("edge-filter: could not share policy version {version} with other workers: {e}"));
                }
                self.installed();
            }
        }
        Ok(())
    }

    fn report(&mut self, rt: &Runtime, now: u64) {
        let body = match self.pending_report.take() {
            Some(b) => b,
            None => {
                self.report_seq += 1;
                let hits: Vec<RuleHits> = std::mem::take(&mut *self.state.hits.borrow_mut())
                    .into_iter()
                    .map(|(rule_id, count)| RuleHits { rule_id, count })
                    .collect();
                let report = EdgeReport {
                    edge_id: rt.cfg.edge_id.clone(),
                    boot_id: format!("{:016x}", self.vm_id),
                    seq: self.report_seq,
                    policy_version: self.state.version(),
                    hits,
                };
                match serde_json::to_vec(&report) {
                    Ok(b) => b,
                    Err(e) => {
                        host::error(&format!("edge-filter: cannot encode report: {e}"));
                        return;
                    }
                }
            }
        };
        let cfg = &rt.cfg;
        let auth = format!("Bearer {}", cfg.edge_token);
        let headers = vec![
            (":method", "POST"),
            (":path", cfg.control_plane.report_path.as_str()),
            (":authority", cfg.control_plane.authority.as_str()),
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(cfg.sync.timeout_margin_ms as u64);
        match hostcalls::dispatch_http_call(
            &cfg.control_plane.cluster,
            headers,
            Some(&body),
            vec![],
            timeout,
        ) {
            Ok(token) => self.calls.push((token, Call::Report)),
            Err(e) => {
                metrics::inc(rt.metrics.reports_failed);
                host::warn(&format!("edge-filter: cannot send hit report: {e:?}"));
            }
        }
        self.pending_report = Some(body);
        self.next_report_ms = now + cfg.sync.report_interval_s as u64 * 1000;
    }

    fn on_report_response(&mut self, rt: &Runtime) {
        let status = host::call_response_header(":status");
        match status.as_deref().and_then(|s| s.parse::<u16>().ok()) {
            Some(s) if (200..300).contains(&s) => self.pending_report = None,
            other => {
                metrics::inc(rt.metrics.reports_failed);
                host::warn(&format!(
                    "edge-filter: hit report not accepted (status {other:?}); will resend"
                ));
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(pos) = self.calls.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, kind) = self.calls.swap_remove(pos);
        let Some(rt) = self.state.runtime() else {
            return;
        };
        match kind {
            Call::Sync => self.on_sync_response(&rt, body_size),
            Call::Report => self.on_report_response(&rt),
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration() else {
            host::error(
                "edge-filter: invalid plugin configuration: field `.`: configuration is empty",
            );
            return false;
        };
        let cfg = match FilterConfig::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                host::error(&format!("edge-filter: {e}"));
                return false;
            }
        };
        // Checked by `parse` already; parsed once more here into keys.
        let trust = match cfg.control_plane.trust() {
            Ok(t) => t,
            Err(e) => {
                host::error(&format!("edge-filter: {e}"));
                return false;
            }
        };
        let extractor = match Extractor::new(&cfg) {
            Ok(x) => x,
            Err(e) => {
                host::error(&format!(
                    "edge-filter: invalid plugin configuration: field `pixel_routes`: {e}"
                ));
                return false;
            }
        };
        self.backoff = Backoff::new(cfg.sync.retry_initial_ms, cfg.sync.retry_max_ms);
        let tick = Duration::from_millis(cfg.sync.shared_check_ms as u64);
        if let Err(e) = hostcalls::set_tick_period(tick) {
            host::error(&format!("edge-filter: cannot set tick period: {e:?}"));
            return false;
        }
        let keys: Vec<String> = trust.ids().map(|k| k.to_string()).collect();
        host::info(&format!(
            "edge-filter: configured edge {:?}, control plane upstream {:?}, fail mode {}, trusted policy keys {}",
            cfg.edge_id,
            cfg.control_plane.cluster,
            cfg.fail_mode.as_str(),
            keys.join(", ")
        ));
        let now = host::now_ms();
        self.next_report_ms = now + cfg.sync.report_interval_s as u64 * 1000;
        *self.state.runtime.borrow_mut() = Some(Rc::new(Runtime {
            cfg,
            extractor,
            trust,
            metrics: Metrics::define(),
        }));
        // A policy other workers already hold is enforced at once. The first sync call goes
        // out on the first tick: some hosts (Kong's ngx_wasm_module) trap a dispatch made
        // from `on_configure`, and the tick comes `sync.shared_check_ms` later.
        self.adopt_shared();
        true
    }

    fn on_tick(&mut self) {
        let Some(rt) = self.state.runtime() else {
            return;
        };
        let now = host::now_ms();
        self.adopt_shared();
        if self.lead(&rt, now) && !self.in_flight(Call::Sync) && now >= self.next_sync_ms {
            self.dispatch_sync(&rt, now);
        }
        if rt.cfg.sync.report_interval_s > 0
            && !self.in_flight(Call::Report)
            && now >= self.next_report_ms
        {
            self.report(&rt, now);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
