//! A compiled plugin: engine, module, linker and the state shared by all its VMs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, Store, Val, ValType};

use crate::options::HostOptions;
use crate::runtime::{PluginInner, EPOCH_TICK};
use crate::shared::{LogLine, MetricKind, MetricSnapshot};
use crate::state::HostState;
use crate::status::Status;

/// Compiled module + engine + state shared by all VMs of one plugin (shared data, shared
/// queues, metrics, logs). Cloning is cheap.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
    /// The module linked against the host ABI, ready to instantiate.
    pub(crate) pre: InstancePre<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("plugin_name", &self.inner.opts.plugin_name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles `wasm` (binary module) and links it against the host ABI.
    pub fn load(wasm: &[u8], opts: HostOptions) -> anyhow::Result<Plugin> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the wasm module")?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(PluginInner::new(opts, engine.clone(), ticker_stop.clone()));

        let mut linker: Linker<HostState> = Linker::new(&engine);
        crate::abi::link(&mut linker)?;
        stub_unknown_imports(&mut linker, &module, &inner)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(anyhow::Error::from)
            .context("linking the module against the proxy-wasm host")?;
        if pre.module().get_export("memory").is_none() {
            anyhow::bail!("the module exports no `memory`");
        }

        let ticker_engine = engine;
        thread::Builder::new()
            .name("edge-host-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("spawning the epoch ticker")?;
        Ok(Plugin { inner, pre })
    }

    /// Reads and loads a `.wasm` file.
    pub fn load_file(path: &Path, opts: HostOptions) -> anyhow::Result<Plugin> {
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Plugin::load(&wasm, opts)
    }

    /// The options the plugin was loaded with.
    pub fn options(&self) -> &HostOptions {
        &self.inner.opts
    }

    /// Every metric the guest defined, in definition order.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        self.inner.metrics.snapshot()
    }

    /// A counter's or gauge's value (a histogram's sample count) by name.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Metrics in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for m in self.metrics() {
            let name = prometheus_name(&m.name);
            match m.kind {
                MetricKind::Counter => {
                    out.push_str(&format!("# TYPE {name} counter\n{name} {}\n", m.value))
                }
                MetricKind::Gauge => {
                    out.push_str(&format!("# TYPE {name} gauge\n{name} {}\n", m.value))
                }
                MetricKind::Histogram => out.push_str(&format!(
                    "# TYPE {name} summary\n{name}_count {}\n{name}_sum {}\n",
                    m.value, m.sum
                )),
            }
        }
        out
    }

    /// Shared data by key: value and CAS.
    pub fn shared_data_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.shared.get(key)
    }

    /// Sets shared data from the host (Envoy semantics for `cas`).
    pub fn shared_data_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
        self.inner.shared.set(key, value, cas, false)
    }

    /// The last captured log lines (`proxy_log` and WASI stdout/stderr), oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.inner.logs.all()
    }
}

/// Prometheus metric names allow `[a-zA-Z0-9_:]`; anything else becomes `_`.
pub fn prometheus_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// Defines every function import the host does not provide as a stub returning the ABI's
/// `Unimplemented` status (zero for non-i32 results), so instantiation never fails on an
/// unknown import.
fn stub_unknown_imports(
    linker: &mut Linker<HostState>,
    module: &Module,
    inner: &Arc<PluginInner>,
) -> anyhow::Result<()> {
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
    let mut store = Store::new(&inner.engine, HostState::new(inner.clone(), wasi, 0));
    let mut missing = Vec::new();
    for import in module.imports() {
        if linker.get_by_import(&mut store, &import).is_none() {
            missing.push((
                import.module().to_string(),
                import.name().to_string(),
                import.ty(),
            ));
        }
    }
    drop(store);
    for (module_name, name, ty) in missing {
        let ExternType::Func(fty) = ty else {
            anyhow::bail!("unsupported non-function import {module_name}::{name}");
        };
        tracing::debug!(module = %module_name, name = %name, "stubbing unknown import");
        let result_types: Vec<ValType> = fty.results().collect();
        linker.func_new(
            &module_name,
            &name,
            fty,
            move |_caller, _params, results| {
                for (i, (slot, ty)) in results.iter_mut().zip(&result_types).enumerate() {
                    *slot = match ty {
                        ValType::I32 if i == 0 => Val::I32(Status::Unimplemented.code() as i32),
                        other => Val::default_for_ty(other).unwrap_or(Val::I32(0)),
                    };
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
