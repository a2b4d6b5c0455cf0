//! The one kit the end-to-end tests, the host tests, the benchmarks and the quick start
//! share: where the build put the `.wasm` modules and the binaries ([`paths`]), child
//! processes killed on drop with their output captured ([`Proc`]), temporary directories,
//! and plugin configuration files written from [`FilterConfig`] with serde.

pub mod paths;
pub mod postgres;
mod proc;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use edge_policy::config::FilterConfig;

pub use paths::{bin, filter_wasm, wasm, NotBuilt};
pub use proc::Proc;
pub use tempfile::TempDir;

/// A fresh directory under the system temp dir, named `edge-<tag>-…`, removed on drop.
pub fn temp_dir(tag: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("edge-{tag}-"))
        .tempdir()
}

/// Writes `cfg` (serialised with serde, so it is exactly what the filter parses) to
/// `dir/name` and returns the path.
pub fn write_plugin_config(dir: &Path, name: &str, cfg: &FilterConfig) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let json = serde_json::to_vec_pretty(cfg).context("serialising the plugin configuration")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs `<control_plane> --database-url <database_url> <args>`; its stdout, or an error
/// with its stderr.
fn cli(control_plane: &Path, database_url: &str, args: &[&str]) -> anyhow::Result<String> {
    let what = format!("`control-plane {}`", args.join(" "));
    let out = Command::new(control_plane)
        .args(["--database-url", database_url])
        .args(args)
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).with_context(|| format!("{what} printed non-UTF-8"))
}

/// Creates the first admin token of a control-plane database with the CLI
/// (`<control_plane> token create --role admin`) and returns it.
pub fn create_admin_token(
    control_plane: &Path,
    database_url: &str,
    name: &str,
) -> anyhow::Result<String> {
    let out = cli(
        control_plane,
        database_url,
        &["token", "create", "--role", "admin", "--name", name],
    )?;
    let token = out.trim().to_string();
    if token.is_empty() {
        bail!("`control-plane token create` printed no token");
    }
    Ok(token)
}

/// The public keys a control-plane database signs policy with, in the text form of
/// `control_plane.trusted_keys` (`<control_plane> key list --json`, which creates the first
/// key of a database that has none, as the first start does).
pub fn trusted_keys(control_plane: &Path, database_url: &str) -> anyhow::Result<Vec<String>> {
    let out = cli(control_plane, database_url, &["key", "list", "--json"])?;
    let keys: Vec<serde_json::Value> =
        serde_json::from_str(&out).context("reading `key list --json`")?;
    let texts: Vec<String> = keys
        .iter()
        .filter(|k| k["state"] != "retired")
        .filter_map(|k| k["public_key"].as_str().map(str::to_string))
        .collect();
    if texts.is_empty() {
        bail!("`control-plane key list` listed no signing key");
    }
    Ok(texts)
}

/// The signing key of the stand-in policy servers of tests and benchmarks (a fixed seed:
/// never a control plane's key).
pub fn test_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5e; 32])
}

/// [`test_signing_key`]'s public key, for `control_plane.trusted_keys`.
pub fn test_trusted_key() -> String {
    edge_policy::seal::public_key_text(&test_signing_key().verifying_key())
}

/// A policy message sealed with [`test_signing_key`] now, as a control plane answers it.
pub fn sealed(message: &[u8]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    edge_policy::seal::seal(message, now, &[&test_signing_key()]).unwrap_or_default()
}
