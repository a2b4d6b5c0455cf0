//! One VM = one Envoy worker: a wasmtime `Store` with one instance of the plugin, driven
//! synchronously through the proxy-wasm callbacks.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use wasmtime::{Instance, Store, Trap, TypedFunc, WasmParams, WasmResults};

use crate::plugin::Plugin;
use crate::shared::QueueWaker;
use crate::state::HostState;
use crate::types::{GuestTrap, HttpCallResponse, PendingHttpCall};

mod stream;

/// `Action::Continue`.
const ACTION_CONTINUE: u32 = 0;
const ROOT: u32 = 1;

type F1 = TypedFunc<u32, ()>;
type F2 = TypedFunc<(u32, u32), ()>;
type B2 = TypedFunc<(u32, u32), u32>;
type A3 = TypedFunc<(u32, u32, u32), u32>;
type F5 = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// Exported guest callbacks, resolved once per instance.
struct Exports {
    on_context_create: F2,
    on_vm_start: Option<B2>,
    on_configure: Option<B2>,
    on_tick: Option<F1>,
    on_queue_ready: Option<F2>,
    on_request_headers: Option<A3>,
    on_request_body: Option<A3>,
    on_request_trailers: Option<B2>,
    on_response_headers: Option<A3>,
    on_response_body: Option<A3>,
    on_response_trailers: Option<B2>,
    on_http_call_response: Option<F5>,
    on_done: Option<TypedFunc<u32, u32>>,
    on_log: Option<F1>,
    on_delete: Option<F1>,
}

fn opt<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Option<TypedFunc<P, R>> {
    instance.get_typed_func(&mut *store, name).ok()
}

impl Exports {
    fn resolve(instance: &Instance, store: &mut Store<HostState>) -> anyhow::Result<Self> {
        Ok(Exports {
            on_context_create: instance
                .get_typed_func(&mut *store, "proxy_on_context_create")
                .map_err(anyhow::Error::from)
                .context("the module does not export proxy_on_context_create(i32, i32)")?,
            on_vm_start: opt(instance, store, "proxy_on_vm_start"),
            on_configure: opt(instance, store, "proxy_on_configure"),
            on_tick: opt(instance, store, "proxy_on_tick"),
            on_queue_ready: opt(instance, store, "proxy_on_queue_ready"),
            on_request_headers: opt(instance, store, "proxy_on_request_headers"),
            on_request_body: opt(instance, store, "proxy_on_request_body"),
            on_request_trailers: opt(instance, store, "proxy_on_request_trailers"),
            on_response_headers: opt(instance, store, "proxy_on_response_headers"),
            on_response_body: opt(instance, store, "proxy_on_response_body"),
            on_response_trailers: opt(instance, store, "proxy_on_response_trailers"),
            on_http_call_response: opt(instance, store, "proxy_on_http_call_response"),
            on_done: opt(instance, store, "proxy_on_done"),
            on_log: opt(instance, store, "proxy_on_log"),
            on_delete: opt(instance, store, "proxy_on_delete"),
        })
    }
}

/// One instance of the plugin (one Envoy worker's VM). Synchronous; `Send` but not shared.
pub struct Vm {
    store: Store<HostState>,
    /// Behind an `Arc` so a callback can be taken without cloning its `TypedFunc` (which
    /// clones registered function types: measurable on the per-request path).
    exports: Arc<Exports>,
    plugin: Plugin,
    next_context: u32,
    poisoned: Option<GuestTrap>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vm", &self.store.data().vm)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn trap(callback: &'static str, e: &wasmtime::Error) -> GuestTrap {
    let deadline_exceeded = matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt));
    let mut message = format!("{e:#}");
    if message.len() > 4000 {
        let mut cut = 4000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    GuestTrap {
        callback,
        message,
        deadline_exceeded,
    }
}

impl Vm {
    /// Instantiates the plugin, runs `_initialize`, creates the root context and calls
    /// `proxy_on_vm_start` and `proxy_on_configure`. Fails if either returns false (the
    /// error carries the guest's recent log lines) or traps.
    pub fn start(plugin: &Plugin) -> anyhow::Result<Vm> {
        let inner = plugin.inner.clone();
        let pre = &plugin.pre;
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
        let vm_id = inner.next_vm_id();
        let mut store = Store::new(&inner.engine, HostState::new(inner.clone(), wasi, vm_id));
        store.epoch_deadline_trap();
        store.set_epoch_deadline(inner.deadline_ticks);
        let instance = pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)
            .context("instantiating the module")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory")?;
        let alloc = instance
            .get_typed_func::<u32, u32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<u32, u32>(&mut store, "malloc"))
            .map_err(anyhow::Error::from)
            .context("the module exports neither proxy_on_memory_allocate nor malloc")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(Arc::new(alloc));
        let exports = Exports::resolve(&instance, &mut store)?;
        let init = instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")
            .ok();
        let mut vm = Vm {
            store,
            exports: Arc::new(exports),
            plugin: plugin.clone(),
            next_context: ROOT + 1,
            poisoned: None,
        };
        let with_logs = |what: String, vm: &Vm| {
            let logs: Vec<String> = vm
                .plugin
                .logs()
                .into_iter()
                .rev()
                .take(20)
                .rev()
                .map(|l| format!("[{:?}] {}", l.level, l.message))
                .collect();
            anyhow::anyhow!("{what}; recent guest logs: {logs:?}")
        };
        if let Some(init) = init {
            vm.invoke::<(), ()>("_initialize", &init, ())
                .map_err(|e| with_logs(e.to_string(), &vm))?;
        }
        let create = vm.exports.on_context_create.clone();
        vm.invoke("proxy_on_context_create", &create, (ROOT, 0))
            .map_err(|e| with_logs(e.to_string(), &vm))?;
        let opts = &plugin.inner.opts;
        let steps = [
            (
                "proxy_on_vm_start",
                vm.exports.on_vm_start.clone(),
                opts.vm_config.len(),
            ),
            (
                "proxy_on_configure",
                vm.exports.on_configure.clone(),
                opts.plugin_config.len(),
            ),
        ];
        for (name, f, size) in steps {
            let Some(f) = f else { continue };
            let size = u32::try_from(size).context("configuration larger than 4 GiB")?;
            let ok = vm
                .invoke(name, &f, (ROOT, size))
                .map_err(|e| with_logs(e.to_string(), &vm))?;
            if ok == 0 {
                return Err(with_logs(format!("{name} returned false"), &vm));
            }
        }
        Ok(vm)
    }

    /// The plugin this VM runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The trap that made this VM unusable, if any.
    pub fn poisoned(&self) -> Option<&GuestTrap> {
        self.poisoned.as_ref()
    }

    /// Number of live HTTP contexts.
    pub fn active_contexts(&self) -> usize {
        self.store.data().http.len()
    }

    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        f: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        self.store
            .set_epoch_deadline(self.plugin.inner.deadline_ticks);
        self.store.data_mut().callback = name;
        let r = f.call(&mut self.store, params);
        let s = self.store.data_mut();
        s.effective_context = ROOT;
        s.callback = "";
        r.map_err(|e| {
            let t = trap(name, &e);
            tracing::error!(plugin = %self.plugin.inner.opts.plugin_name, "{t}");
            self.poisoned = Some(t.clone());
            t
        })
    }

    /// When the next `proxy_on_tick` is due, if the guest set a tick period.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.store.data().next_tick
    }

    /// Runs `proxy_on_tick` if due, then delivers pending `proxy_on_queue_ready`.
    pub fn run_due_timers(&mut self, now: Instant) -> Result<(), GuestTrap> {
        let s = self.store.data_mut();
        if let (Some(due), Some(period)) = (s.next_tick, s.tick_period) {
            if due <= now {
                s.next_tick = Some(now + period);
                if let Some(f) = self.exports.on_tick.clone() {
                    self.invoke("proxy_on_tick", &f, ROOT)?;
                }
            }
        }
        self.dispatch_queue_ready()
    }

    /// Delivers `proxy_on_queue_ready` for items enqueued to queues this VM registered.
    pub fn dispatch_queue_ready(&mut self) -> Result<(), GuestTrap> {
        let vm = self.store.data().vm;
        let ready = self.plugin.inner.queues.take_ready(vm);
        let Some(f) = self.exports.on_queue_ready.clone() else {
            return Ok(());
        };
        for (ctx, queue) in ready {
            self.store.data_mut().effective_context = ctx;
            self.invoke("proxy_on_queue_ready", &f, (ctx, queue))?;
        }
        Ok(())
    }

    /// True when an item waits in a queue this VM registered.
    pub fn has_queue_ready(&self) -> bool {
        self.plugin.inner.queues.has_ready(self.store.data().vm)
    }

    pub(crate) fn set_queue_waker(&self, waker: QueueWaker) {
        self.plugin
            .inner
            .queues
            .set_waker(self.store.data().vm, waker);
    }

    /// HTTP calls dispatched by the guest since the last call.
    pub fn take_http_calls(&mut self) -> Vec<PendingHttpCall> {
        std::mem::take(&mut self.store.data_mut().pending_calls)
    }

    /// Delivers a call's response through `proxy_on_http_call_response`. `None` means the
    /// callout failed (connect failure, timeout): the guest sees 0 headers and no `:status`,
    /// as in Envoy. Tokens that are unknown or whose context has ended are ignored.
    pub fn deliver_http_call_response(
        &mut self,
        token: u32,
        resp: Option<HttpCallResponse>,
    ) -> Result<(), GuestTrap> {
        if let Some(t) = &self.poisoned {
            return Err(t.clone());
        }
        let s = self.store.data_mut();
        let Some(owner) = s.call_owner.remove(&token) else {
            return Ok(());
        };
        if owner != ROOT && !s.http.contains_key(&owner) {
            return Ok(());
        }
        let resp = resp.unwrap_or_default();
        let sizes = (
            resp.headers.len() as u32,
            u32::try_from(resp.body.len()).unwrap_or(u32::MAX),
            resp.trailers.len() as u32,
        );
        s.call_response = Some(resp);
        let Some(f) = self.exports.on_http_call_response.clone() else {
            self.store.data_mut().call_response = None;
            return Ok(());
        };
        self.store.data_mut().effective_context = owner;
        let r = self.invoke(
            "proxy_on_http_call_response",
            &f,
            (owner, token, sizes.0, sizes.1, sizes.2),
        );
        self.store.data_mut().call_response = None;
        r
    }

    /// Id of this VM instance (unique within its plugin).
    pub fn instance_id(&self) -> u64 {
        self.store.data().vm
    }

    /// Size of the guest's linear memory in bytes (it only grows; for sizing and benches).
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.plugin.inner.queues.forget_vm(self.store.data().vm);
    }
}
