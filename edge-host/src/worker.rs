//! A [`Vm`] on its own OS thread with an event loop: request jobs from a channel, ticks,
//! queue notifications, and HTTP calls performed for real on a tokio runtime. A trap is
//! answered by the fail mode and the VM is re-created.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::httpcall::{self, HttpClient};
use crate::options::FailMode;
use crate::plugin::Plugin;
use crate::types::{
    FilterOutcome, GuestTrap, HeaderList, HttpCallResponse, HttpContextId, RequestHead,
    ResponseHead, ResponseOutcome,
};
use crate::vm::Vm;

/// Longest the loop sleeps when nothing is scheduled.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// Status of a fail-closed answer.
const FAIL_CLOSED_STATUS: u16 = 503;

/// The filter's decision on a request, after any pause was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the request with these headers (pseudo-headers included).
    Continue {
        context: HttpContextId,
        headers: HeaderList,
    },
    /// Answer with this response.
    LocalResponse {
        context: HttpContextId,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl Outcome {
    /// The HTTP context to pass to `on_response` / `finish`.
    pub fn context(&self) -> HttpContextId {
        match self {
            Outcome::Continue { context, .. } | Outcome::LocalResponse { context, .. } => *context,
        }
    }
}

enum Msg {
    Request(RequestHead, oneshot::Sender<Outcome>),
    Response(
        HttpContextId,
        ResponseHead,
        oneshot::Sender<ResponseOutcome>,
    ),
    Finish(HttpContextId),
    CallDone {
        vm: u64,
        token: u32,
        resp: Option<HttpCallResponse>,
    },
    Wake,
    Shutdown,
}

/// Spawns workers.
pub struct Worker;

struct HandleInner {
    tx: Sender<Msg>,
    fail_mode: FailMode,
    restarts: Arc<AtomicU64>,
    plugin: Plugin,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
    }
}

/// Async handle to a worker thread. Cheap to clone; the worker stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct WorkerHandle {
    inner: Arc<HandleInner>,
}

/// A context id that no VM has (VM ids start at 1): used for fail-mode answers.
const NO_CONTEXT: HttpContextId = HttpContextId { vm: 0, id: 0 };

fn fail_request(mode: FailMode, head: &RequestHead) -> Outcome {
    match mode {
        FailMode::Open => Outcome::Continue {
            context: NO_CONTEXT,
            headers: head.header_map().into(),
        },
        FailMode::Closed => Outcome::LocalResponse {
            context: NO_CONTEXT,
            status: FAIL_CLOSED_STATUS,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"error":"edge filter unavailable"}"#.to_vec(),
        },
    }
}

fn fail_response(mode: FailMode, head: &ResponseHead) -> ResponseOutcome {
    match mode {
        FailMode::Open => ResponseOutcome::Continue {
            headers: head.headers.clone(),
        },
        FailMode::Closed => ResponseOutcome::LocalResponse {
            status: FAIL_CLOSED_STATUS,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"error":"edge filter unavailable"}"#.to_vec(),
        },
    }
}

impl Worker {
    /// Starts a VM of `plugin` on a new thread; HTTP calls run on `runtime`. Fails if the
    /// first VM does not start. The fail mode is `plugin.options().fail_mode`.
    pub fn spawn(plugin: Plugin, runtime: Handle) -> anyhow::Result<WorkerHandle> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let restarts = Arc::new(AtomicU64::new(0));
        let fail_mode = plugin.options().fail_mode;
        let state = Loop {
            plugin: plugin.clone(),
            runtime,
            client: None,
            tx: tx.clone(),
            vm: None,
            fail_mode,
            paused_req: HashMap::new(),
            paused_resp: HashMap::new(),
            restarts: restarts.clone(),
        };
        thread::Builder::new()
            .name("edge-host-worker".into())
            .spawn(move || state.run(rx, ready_tx))
            .context("spawning the worker thread")?;
        ready_rx
            .recv()
            .context("worker thread exited during start")??;
        Ok(WorkerHandle {
            inner: Arc::new(HandleInner {
                tx,
                fail_mode,
                restarts,
                plugin,
            }),
        })
    }
}

impl WorkerHandle {
    /// Runs the request through the filter (resolving pauses and HTTP calls).
    pub async fn on_request(&self, head: RequestHead) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let fallback = fail_request(self.inner.fail_mode, &head);
        if self.inner.tx.send(Msg::Request(head, tx)).is_err() {
            return fallback;
        }
        rx.await.unwrap_or(fallback)
    }

    /// Runs the response headers through the filter and ends the context.
    pub async fn on_response(&self, ctx: HttpContextId, head: ResponseHead) -> ResponseOutcome {
        let (tx, rx) = oneshot::channel();
        let fallback = fail_response(self.inner.fail_mode, &head);
        if self.inner.tx.send(Msg::Response(ctx, head, tx)).is_err() {
            return fallback;
        }
        rx.await.unwrap_or(fallback)
    }

    /// Ends a context that gets no response pass (local reply, upstream failure).
    pub fn finish(&self, ctx: HttpContextId) {
        let _ = self.inner.tx.send(Msg::Finish(ctx));
    }

    /// How many times the VM was re-created after a trap.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }

    /// The plugin this worker runs.
    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }
}

struct Loop {
    plugin: Plugin,
    runtime: Handle,
    client: Option<HttpClient>,
    tx: Sender<Msg>,
    vm: Option<Vm>,
    fail_mode: FailMode,
    paused_req: HashMap<HttpContextId, (RequestHead, oneshot::Sender<Outcome>)>,
    paused_resp: HashMap<HttpContextId, (ResponseHead, oneshot::Sender<ResponseOutcome>)>,
    restarts: Arc<AtomicU64>,
}

impl Loop {
    fn run(mut self, rx: Receiver<Msg>, ready: Sender<anyhow::Result<()>>) {
        match self.start_vm() {
            Ok(()) => {
                let _ = ready.send(Ok(()));
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
        loop {
            let wait = self
                .vm
                .as_ref()
                .and_then(Vm::next_deadline)
                .map_or(IDLE_WAIT, |d| d.saturating_duration_since(Instant::now()))
                .min(IDLE_WAIT);
            match rx.recv_timeout(wait) {
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.housekeeping();
        }
    }

    fn start_vm(&mut self) -> anyhow::Result<()> {
        let vm = Vm::start(&self.plugin)?;
        let tx = self.tx.clone();
        vm.set_queue_waker(Arc::new(move || {
            let _ = tx.send(Msg::Wake);
        }));
        self.vm = Some(vm);
        Ok(())
    }

    /// Logs the trap, answers everything paused on the dead VM by the fail mode, and
    /// re-creates the VM.
    fn recover(&mut self, trap: &GuestTrap) {
        tracing::error!(
            plugin = %self.plugin.options().plugin_name,
            fail_mode = %self.fail_mode,
            "{trap}; re-creating the VM"
        );
        self.vm = None;
        for (_, (head, reply)) in self.paused_req.drain() {
            let _ = reply.send(fail_request(self.fail_mode, &head));
        }
        for (_, (head, reply)) in self.paused_resp.drain() {
            let _ = reply.send(fail_response(self.fail_mode, &head));
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.start_vm() {
            tracing::error!("re-creating the VM failed: {e:#}");
        }
    }

    fn vm(&mut self) -> Option<&mut Vm> {
        if self.vm.is_none() {
            if let Err(e) = self.start_vm() {
                tracing::error!("starting the VM failed: {e:#}");
            }
        }
        self.vm.as_mut()
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Request(head, reply) => {
                let Some(vm) = self.vm() else {
                    let _ = reply.send(fail_request(self.fail_mode, &head));
                    return;
                };
                match vm.on_request(&head).map(to_outcome) {
                    Ok(Err(context)) => {
                        self.paused_req.insert(context, (head, reply));
                    }
                    Ok(Ok(outcome)) => {
                        let _ = reply.send(outcome);
                    }
                    Err(trap) => {
                        self.recover(&trap);
                        let _ = reply.send(fail_request(self.fail_mode, &head));
                    }
                }
            }
            Msg::Response(ctx, head, reply) => {
                let Some(vm) = self.vm() else {
                    let _ = reply.send(fail_response(self.fail_mode, &head));
                    return;
                };
                match vm.on_response(ctx, &head) {
                    Ok(ResponseOutcome::Paused) => {
                        self.paused_resp.insert(ctx, (head, reply));
                    }
                    Ok(other) => {
                        let _ = reply.send(other);
                    }
                    Err(trap) => {
                        self.recover(&trap);
                        let _ = reply.send(fail_response(self.fail_mode, &head));
                    }
                }
            }
            Msg::Finish(ctx) => {
                if let Some(vm) = self.vm.as_mut() {
                    vm.finish(ctx);
                    if let Some(trap) = vm.poisoned().cloned() {
                        self.recover(&trap);
                    }
                }
            }
            Msg::CallDone { vm, token, resp } => {
                let Some(current) = self.vm.as_mut() else {
                    return;
                };
                if current.instance_id() != vm {
                    return;
                }
                if let Err(trap) = current.deliver_http_call_response(token, resp) {
                    self.recover(&trap);
                }
            }
            Msg::Wake | Msg::Shutdown => {}
        }
    }

    fn housekeeping(&mut self) {
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        if let Err(trap) = vm.run_due_timers(Instant::now()) {
            self.recover(&trap);
            return;
        }
        self.dispatch_calls();
        self.poll_paused();
    }

    fn dispatch_calls(&mut self) {
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        let calls = vm.take_http_calls();
        if calls.is_empty() {
            return;
        }
        let vm_id = vm.instance_id();
        let client = self.client.get_or_insert_with(|| {
            let _guard = self.runtime.enter();
            httpcall::client()
        });
        for call in calls {
            let client = client.clone();
            let tx = self.tx.clone();
            self.runtime.spawn(async move {
                let resp = httpcall::perform(&client, &call).await;
                let _ = tx.send(Msg::CallDone {
                    vm: vm_id,
                    token: call.token,
                    resp,
                });
            });
        }
    }

    fn poll_paused(&mut self) {
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        let ids: Vec<HttpContextId> = self.paused_req.keys().copied().collect();
        for ctx in ids {
            if let Some(Ok(outcome)) = vm.poll_request(ctx).map(to_outcome) {
                if let Some((_, reply)) = self.paused_req.remove(&ctx) {
                    let _ = reply.send(outcome);
                }
            }
        }
        let ids: Vec<HttpContextId> = self.paused_resp.keys().copied().collect();
        for ctx in ids {
            let Some(vm) = self.vm.as_mut() else { return };
            match vm.poll_response(ctx) {
                None => {}
                Some(Ok(outcome)) => {
                    if let Some((_, reply)) = self.paused_resp.remove(&ctx) {
                        let _ = reply.send(outcome);
                    }
                }
                Some(Err(trap)) => {
                    self.recover(&trap);
                    return;
                }
            }
        }
    }
}

/// A final outcome, or `Err(context)` while the request is paused.
fn to_outcome(o: FilterOutcome) -> Result<Outcome, HttpContextId> {
    match o {
        FilterOutcome::Continue { context, headers } => Ok(Outcome::Continue { context, headers }),
        FilterOutcome::LocalResponse {
            context,
            status,
            headers,
            body,
        } => Ok(Outcome::LocalResponse {
            context,
            status,
            headers,
            body,
        }),
        FilterOutcome::Paused { context } => Err(context),
    }
}
