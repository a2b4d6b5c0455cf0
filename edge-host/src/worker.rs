//! A [`Vm`] on its own OS thread with an event loop: request jobs from a channel, ticks,
//! queue notifications, and HTTP calls performed for real on a tokio runtime. A trap is
//! answered by the fail mode and the VM is re-created.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::httpcall::{self, HttpClient};
use crate::options::{FailMode, LogLevel};
use crate::plugin::Plugin;
use crate::types::{
    DataOutcome, Direction, FilterOutcome, GuestTrap, HttpCallResponse, HttpContextId, RequestHead,
    ResponseHead, ResponseOutcome,
};
use crate::vm::Vm;

mod fail;

pub use fail::Outcome;
use fail::{fail_data, fail_request, fail_response, Waiter};

/// Longest the loop sleeps when nothing is scheduled.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// Ids of trapped VMs remembered, so that the responses of their in-flight requests are
/// answered by the fail mode (VM ids only grow; a trap is rare).
const DEAD_VMS_KEPT: usize = 64;

enum Msg {
    Request(RequestHead, oneshot::Sender<Outcome>),
    Response(
        HttpContextId,
        ResponseHead,
        oneshot::Sender<ResponseOutcome>,
    ),
    Data(HttpContextId, Direction, Data, oneshot::Sender<DataOutcome>),
    Finish(HttpContextId),
    CallDone {
        vm: u64,
        token: u32,
        resp: Option<HttpCallResponse>,
    },
    Wake,
    Shutdown,
}

/// A body chunk (with `end_of_stream`) or the trailers.
enum Data {
    Chunk(Bytes, bool),
    Trailers(Vec<(String, String)>),
}

/// Spawns workers.
pub struct Worker;

struct HandleInner {
    tx: Sender<Msg>,
    fail_mode: FailMode,
    restarts: Arc<AtomicU64>,
    plugin: Plugin,
    /// [`Vm::wants_body`] by direction (request, response).
    wants_body: [bool; 2],
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

impl Worker {
    /// Starts a VM of `plugin` on a new thread; HTTP calls run on `runtime`. Fails if the
    /// first VM does not start. The fail mode is `plugin.options().fail_mode`.
    pub fn spawn(plugin: Plugin, runtime: Handle) -> anyhow::Result<WorkerHandle> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let restarts = Arc::new(AtomicU64::new(0));
        let fail_mode = plugin.options().fail_mode;
        plugin.inner.clusters.start_health_checks(&runtime);
        let state = Loop {
            plugin: plugin.clone(),
            runtime,
            client: None,
            tx: tx.clone(),
            vm: None,
            fail_mode,
            paused: HashMap::new(),
            dead: VecDeque::new(),
            restarts: restarts.clone(),
        };
        thread::Builder::new()
            .name("edge-host-worker".into())
            .spawn(move || state.run(rx, ready_tx))
            .context("spawning the worker thread")?;
        let wants_body = ready_rx
            .recv()
            .context("worker thread exited during start")??;
        Ok(WorkerHandle {
            inner: Arc::new(HandleInner {
                tx,
                fail_mode,
                restarts,
                plugin,
                wants_body,
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

    /// True when the filter sees bodies of `dir` ([`Vm::wants_body`]); otherwise they pass
    /// through without a round trip to the worker.
    pub fn wants_body(&self, dir: Direction) -> bool {
        self.inner.wants_body[dir as usize]
    }

    /// Runs a body chunk through the filter ([`Vm::on_body`]); pauses are resolved.
    pub async fn on_body(
        &self,
        ctx: HttpContextId,
        dir: Direction,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> DataOutcome {
        self.data(ctx, dir, Data::Chunk(chunk, end_of_stream)).await
    }

    /// Runs the trailers through the filter ([`Vm::on_trailers`]); pauses are resolved.
    pub async fn on_trailers(
        &self,
        ctx: HttpContextId,
        dir: Direction,
        trailers: Vec<(String, String)>,
    ) -> DataOutcome {
        self.data(ctx, dir, Data::Trailers(trailers)).await
    }

    async fn data(&self, ctx: HttpContextId, dir: Direction, data: Data) -> DataOutcome {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Data(ctx, dir, data, tx)).is_err() {
            return fail_data(self.inner.fail_mode);
        }
        rx.await.unwrap_or_else(|_| fail_data(self.inner.fail_mode))
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
    paused: HashMap<HttpContextId, Waiter>,
    /// Ids of VMs that trapped, newest last ([`DEAD_VMS_KEPT`]).
    dead: VecDeque<u64>,
    restarts: Arc<AtomicU64>,
}

impl Loop {
    fn run(mut self, rx: Receiver<Msg>, ready: Sender<anyhow::Result<[bool; 2]>>) {
        match self.start_vm() {
            Ok(()) => {
                let wants = self.vm.as_ref().map_or([false; 2], |vm| {
                    [
                        vm.wants_body(Direction::Request),
                        vm.wants_body(Direction::Response),
                    ]
                });
                let _ = ready.send(Ok(wants));
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

    /// Logs the trap (to `tracing` and the plugin's log lines), answers everything paused
    /// on the dead VM by the fail mode, remembers the VM as dead (so the rest of its
    /// in-flight requests are answered by the fail mode too) and re-creates it.
    fn recover(&mut self, trap: &GuestTrap) {
        let opts = self.plugin.options();
        tracing::error!(
            plugin = %opts.plugin_name,
            fail_mode = %self.fail_mode,
            "{trap}; re-creating the VM"
        );
        self.plugin.inner.logs.push(
            &opts.plugin_name,
            LogLevel::Error,
            format!("{trap}; fail mode {}; re-creating the VM", self.fail_mode),
        );
        if let Some(vm) = self.vm.take() {
            if self.dead.len() >= DEAD_VMS_KEPT {
                self.dead.pop_front();
            }
            self.dead.push_back(vm.instance_id());
        }
        for (_, waiter) in self.paused.drain() {
            waiter.fail(self.fail_mode);
        }
        self.restarts.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.start_vm() {
            tracing::error!("re-creating the VM failed: {e:#}");
        }
    }

    /// True when `ctx` belongs to a VM that trapped: its request was in flight (forwarded,
    /// or between phases) when the VM died, so it is answered by the fail mode.
    fn orphaned(&self, ctx: HttpContextId) -> bool {
        let dead = self.dead.contains(&ctx.vm);
        if dead {
            tracing::warn!(
                context = ctx.id,
                fail_mode = %self.fail_mode,
                "the VM of this request trapped while it was in flight"
            );
        }
        dead
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
                        self.paused.insert(context, Waiter::Request(head, reply));
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
                if self.orphaned(ctx) {
                    let _ = reply.send(fail_response(self.fail_mode, &head));
                    return;
                }
                let Some(vm) = self.vm() else {
                    let _ = reply.send(fail_response(self.fail_mode, &head));
                    return;
                };
                match vm.on_response(ctx, &head) {
                    Ok(ResponseOutcome::Paused) => {
                        self.paused.insert(ctx, Waiter::Response(head, reply));
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
            Msg::Data(ctx, dir, data, reply) => {
                if self.orphaned(ctx) {
                    let _ = reply.send(fail_data(self.fail_mode));
                    return;
                }
                let Some(vm) = self.vm() else {
                    let _ = reply.send(fail_data(self.fail_mode));
                    return;
                };
                let trailers = matches!(data, Data::Trailers(_));
                let r = match &data {
                    Data::Chunk(chunk, eos) => vm.on_body(ctx, dir, chunk, *eos),
                    Data::Trailers(t) => vm.on_trailers(ctx, dir, t),
                };
                match r {
                    Ok(DataOutcome::Paused) => {
                        let waiter = Waiter::Data {
                            dir,
                            trailers,
                            reply,
                        };
                        self.paused.insert(ctx, waiter);
                    }
                    Ok(other) => {
                        let _ = reply.send(other);
                    }
                    Err(trap) => {
                        self.recover(&trap);
                        let _ = reply.send(fail_data(self.fail_mode));
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
            let cluster = self.plugin.inner.clusters.get(&call.upstream).cloned();
            self.runtime.spawn(async move {
                let resp = httpcall::perform(&client, &call, cluster.as_deref()).await;
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
        let ids: Vec<HttpContextId> = self.paused.keys().copied().collect();
        for ctx in ids {
            let Some(waiter) = self.paused.get(&ctx) else {
                continue;
            };
            let done = match waiter {
                Waiter::Request(..) => vm.poll_request(ctx).map(|o| Ok(Resumed::Request(o))),
                Waiter::Response(..) => vm.poll_response(ctx).map(|r| r.map(Resumed::Response)),
                Waiter::Data { dir, trailers, .. } => vm
                    .poll_data(ctx, *dir, *trailers)
                    .map(|r| r.map(Resumed::Data)),
            };
            if let Some(trap) = vm.poisoned().cloned() {
                self.recover(&trap);
                return;
            }
            let Some(done) = done else { continue };
            let Some(waiter) = self.paused.remove(&ctx) else {
                continue;
            };
            match (done, waiter) {
                (Ok(Resumed::Request(o)), Waiter::Request(_, reply)) => {
                    if let Ok(outcome) = to_outcome(o) {
                        let _ = reply.send(outcome);
                    }
                }
                (Ok(Resumed::Response(o)), Waiter::Response(_, reply)) => {
                    let _ = reply.send(o);
                }
                (Ok(Resumed::Data(o)), Waiter::Data { reply, .. }) => {
                    let _ = reply.send(o);
                }
                (Err(trap), waiter) => {
                    self.paused.insert(ctx, waiter);
                    self.recover(&trap);
                    return;
                }
                (_, waiter) => waiter.fail(self.fail_mode),
            }
        }
    }
}

/// What a paused request or response resumed with.
enum Resumed {
    Request(FilterOutcome),
    Response(ResponseOutcome),
    Data(DataOutcome),
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
