//! The root context: configuration, policy sync, sharing between VMs, hit reports.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use edge_policy::config::FilterConfig;
use edge_policy::config::SyncSettings;
use edge_policy::facts::Extractor;
use edge_policy::lease;
use edge_policy::matcher::{Pieces, Update};
use edge_policy::report::{EdgeReport, RuleHits};
use edge_policy::seal::{ReadAt, Seal};
use edge_policy::shared::PART_LEN;
use edge_policy::sync::{classify, poll_path, SyncOutcome, Trust};
use edge_policy::wire;
use edge_policy::worker::{self, Adopt, Answered, Note, ReadFailure, Schedule};
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
    /// When to sync and report, back-off, streaks (decided in `edge_policy::worker`).
    schedule: Schedule,
    /// Outstanding callouts: (token, kind).
    calls: Vec<(u32, Call)>,
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
            schedule: Schedule::new(&SyncSettings::default(), 0),
            calls: Vec::new(),
            shared_snapshot: None,
        }
    }

    /// Pick up a policy another VM published, as [`worker::adoption`] says: apply its
    /// shared deltas in place when this VM is on the shared chain, else decode the shared
    /// snapshot (and the deltas on top).
    fn adopt_shared(&mut self) {
        let Some(announced) = shared::announced() else {
            return;
        };
        let plan = worker::adoption(&announced, self.state.held_version(), self.shared_snapshot);
        if plan == Adopt::Nothing {
            return;
        }
        let deltas = shared::shared_deltas();
        if let Adopt::Deltas { and_snapshot } = plan {
            let taken = self.state.matcher.borrow_mut().take();
            if let Some(mut m) = taken {
                // No other reference exists outside a request, so this does not copy.
                let before = m.version();
                apply_deltas(Rc::make_mut(&mut m), &deltas);
                let reached = m.version();
                *self.state.matcher.borrow_mut() = Some(m);
                if reached != before {
                    self.installed();
                }
                if reached == announced.version || !and_snapshot {
                    return;
                }
            }
        }
        self.shared_snapshot = Some(announced.snapshot);
        match Matcher::decode_pieces(&mut shared::SharedParts(announced)) {
            Ok(Update::Snapshot(mut m)) => {
                apply_deltas(&mut m, &deltas);
                if worker::adopt_snapshot(m.version(), self.state.held_version()) {
                    self.install(*m);
                }
            }
            Ok(Update::Delta(_)) => {
                host::error("edge-filter: shared policy holds a delta; ignored")
            }
            Err(e) => {
                match worker::read_failure(announced.snapshot, shared::announced().as_ref()) {
                    // The next tick reads the new one.
                    ReadFailure::Replaced => self.shared_snapshot = None,
                    ReadFailure::Malformed => host::error(&format!(
                        "edge-filter: shared policy is malformed ({e}); keeping version {}",
                        self.state.version()
                    )),
                }
            }
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
                self.schedule.sync_sent(now);
                metrics::inc(rt.metrics.sync_sent);
            }
            Err(e) => {
                host::error(&format!(
                    "edge-filter: cannot call control plane upstream {:?} ({e:?}); check control_plane.cluster",
                    cfg.control_plane.cluster
                ));
                metrics::inc(rt.metrics.sync_failed);
                self.schedule.sync_not_sent(now, host::random_u64());
            }
        }
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
        let m = &rt.metrics;
        // What a refusal note says (the worker decides whether it is logged).
        let mut refusal = String::new();
        let answered = match classify(
            status.as_deref(),
            &mut body,
            self.state.held_version(),
            &trust,
        ) {
            SyncOutcome::Update(msg, seal) => match self.apply(msg, &seal, &mut body) {
                Ok(()) => {
                    metrics::inc(m.sync_ok);
                    Answered::Updated
                }
                Err(reason) => {
                    host::error(&format!(
                        "edge-filter: policy update rejected ({reason}); keeping version {version}"
                    ));
                    metrics::inc(m.sync_failed);
                    Answered::Failed
                }
            },
            SyncOutcome::NotModified => {
                metrics::inc(m.sync_ok);
                Answered::NotModified
            }
            SyncOutcome::Unauthorized(code) => {
                metrics::inc(m.sync_unauthorized);
                metrics::inc(m.sync_failed);
                refusal = format!("HTTP {code}");
                Answered::Unauthorized
            }
            SyncOutcome::Rejected(e) => {
                metrics::inc(m.policy_rejected);
                metrics::inc(m.sync_failed);
                refusal = e.to_string();
                Answered::Rejected(e.reason())
            }
            SyncOutcome::Failed(reason) => {
                host::warn(&format!(
                    "edge-filter: policy sync failed ({reason}); keeping policy version {version}"
                ));
                metrics::inc(m.sync_failed);
                Answered::Failed
            }
        };
        if answered == Answered::Updated {
            // A big snapshot can take longer than the lease: renew it at once, so no other
            // VM starts polling while this one goes on (or stop, if one already has).
            self.lead(rt, host::now_ms());
        }
        for note in self
            .schedule
            .sync_answered(&rt.cfg.sync, answered, now, host::random_u64())
        {
            match note {
                Note::Unauthorized => host::error(&format!(
                    "edge-filter: control plane refused the edge token ({refusal}) for edge {:?}; \
                     check edge_token; keeping policy version {version}",
                    rt.cfg.edge_id
                )),
                Note::TokenAccepted => {
                    host::info("edge-filter: control plane accepts the edge token again")
                }
                Note::Rejected(_) => host::error(&format!(
                    "edge-filter: policy answer refused ({refusal}); keeping policy version {version}"
                )),
                Note::Verified => host::info("edge-filter: policy answers verify again"),
            }
        }
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
        let (state, vm_id) = (&self.state, self.vm_id);
        let body = self.schedule.report_body(&rt.cfg.sync, now, |seq| {
            let hits: Vec<RuleHits> = std::mem::take(&mut *state.hits.borrow_mut())
                .into_iter()
                .map(|(rule_id, count)| RuleHits { rule_id, count })
                .collect();
            let report = EdgeReport {
                edge_id: rt.cfg.edge_id.clone(),
                boot_id: format!("{vm_id:016x}"),
                seq,
                policy_version: state.version(),
                hits,
                interval_s: Some(rt.cfg.sync.report_interval_s),
            };
            serde_json::to_vec(&report)
                .map_err(|e| host::error(&format!("edge-filter: cannot encode report: {e}")))
                .ok()
        });
        let Some(body) = body else {
            return;
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
            Ok(token) => {
                self.calls.push((token, Call::Report));
                self.schedule.report_sent(true);
            }
            Err(e) => {
                metrics::inc(rt.metrics.reports_failed);
                host::warn(&format!("edge-filter: cannot send hit report: {e:?}"));
                self.schedule.report_sent(false);
            }
        }
    }

    fn on_report_response(&mut self, rt: &Runtime) {
        let status = host::call_response_header(":status");
        let code = status.as_deref().and_then(|s| s.trim().parse::<u16>().ok());
        if !self.schedule.report_answered(code) {
            metrics::inc(rt.metrics.reports_failed);
            host::warn(&format!(
                "edge-filter: hit report not accepted (status {code:?}); will resend"
            ));
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
        let now = host::now_ms();
        self.schedule = Schedule::new(&cfg.sync, now);
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
        rt.metrics.flush();
        let now = host::now_ms();
        self.adopt_shared();
        // Called on every tick: the leader renews its lease while its long-poll is out.
        let leads = self.lead(&rt, now);
        let due = self.schedule.due(&rt.cfg.sync, now, leads);
        if due.sync {
            self.dispatch_sync(&rt, now);
        }
        if due.report {
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
