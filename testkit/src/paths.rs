//! Where the build put things: the `.wasm` modules under
//! `<target>/wasm32-wasip1/wasm-release/` and the workspace's binaries. One search order for
//! every test, benchmark and the quick start; a miss names the command that builds the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Builds both wasm modules the tests load.
pub const WASM_BUILD: &str = "cargo build --profile wasm-release --target wasm32-wasip1 \
                              -p edge-filter -p conformance-filter";
/// Builds the binaries the tests and load generators start.
pub const BINS_BUILD: &str = "cargo build --release --bins";

/// A built artifact that is not there: what was looked for, where, and how to build it.
#[derive(Clone, PartialEq, Eq)]
pub struct NotBuilt {
    pub name: String,
    pub tried: Vec<PathBuf>,
    pub build: &'static str,
}

impl fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is missing (looked for", self.name)?;
        for p in &self.tried {
            write!(f, " {}", p.display())?;
        }
        write!(f, "); build it first with `{}`", self.build)
    }
}

// `unwrap()` in a test prints Debug: make that the readable message too.
impl fmt::Debug for NotBuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for NotBuilt {}

/// The target directories to search, first match wins: `$CARGO_TARGET_DIR`, the target
/// directory the running executable was built into (so `target/release/quickstart` finds
/// its sibling `target/wasm32-wasip1/`), and the workspace's `target/`.
pub fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = exe_profile_dir().as_deref().and_then(Path::parent) {
        dirs.push(d.to_path_buf());
    }
    dirs.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    );
    dirs
}

/// `target/<profile>` of the running executable (`target/release/quickstart`, or a test's
/// `target/release/deps/e2e-<hash>`).
fn exe_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    Some(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent()?.to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// The first of `candidates` that is a file, else a [`NotBuilt`] for `name` naming `build`.
pub fn find(
    name: &str,
    candidates: Vec<PathBuf>,
    build: &'static str,
) -> Result<PathBuf, NotBuilt> {
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(NotBuilt {
            name: name.to_string(),
            tried: candidates,
            build,
        }),
    }
}

/// A built wasm module by file name (`edge_filter.wasm`, `conformance_filter.wasm`).
pub fn wasm(name: &str) -> Result<PathBuf, NotBuilt> {
    let candidates = target_dirs()
        .into_iter()
        .map(|d| d.join("wasm32-wasip1").join("wasm-release").join(name))
        .collect();
    find(name, candidates, WASM_BUILD)
}

/// The filter: `$EDGE_FILTER_WASM` when set (e.g. a baseline build to compare against),
/// else `edge_filter.wasm` found by [`wasm`].
pub fn filter_wasm() -> Result<PathBuf, NotBuilt> {
    match std::env::var_os("EDGE_FILTER_WASM") {
        Some(p) => find("edge_filter.wasm", vec![PathBuf::from(p)], WASM_BUILD),
        None => wasm("edge_filter.wasm"),
    }
}

/// A binary of the workspace (`control-plane`, `edge-proxy`, `demo-upstream`, `quickstart`):
/// next to the running executable first (same profile), else in a target directory's
/// `release/`.
pub fn bin(name: &str) -> Result<PathBuf, NotBuilt> {
    let mut candidates: Vec<PathBuf> = exe_profile_dir()
        .map(|d| d.join(name))
        .into_iter()
        .collect();
    candidates.extend(
        target_dirs()
            .into_iter()
            .map(|d| d.join("release").join(name)),
    );
    find(name, candidates, BINS_BUILD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_module_names_the_build_command_and_the_places_looked_at() {
        let e = wasm("no_such_module.wasm").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(WASM_BUILD), "{msg}");
        assert!(msg.contains("no_such_module.wasm is missing"), "{msg}");
        assert!(!e.tried.is_empty());
        assert!(e
            .tried
            .iter()
            .all(|p| p.ends_with("wasm32-wasip1/wasm-release/no_such_module.wasm")));
        assert_eq!(format!("{e:?}"), msg);
    }

    #[test]
    fn the_workspace_target_dir_is_searched_last() {
        let dirs = target_dirs();
        let last = dirs.last().unwrap();
        assert!(last.ends_with("testkit/../target"), "{}", last.display());
    }

    #[test]
    fn a_missing_binary_names_cargo_build_bins() {
        let e = bin("no-such-binary").unwrap_err();
        assert!(e.to_string().contains(BINS_BUILD), "{e}");
    }
}
