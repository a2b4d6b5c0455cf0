//! The path canonicaliser: never a panic; the canonical form starts with `/`, has no `//`,
//! `/./` or `/../` (nor ends in `/.` or `/..`), and is its own canonical form; every
//! reading is as clean.
#![no_main]

use edge_policy::canon::canonical_path;
use libfuzzer_sys::fuzz_target;

fn clean(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("//")
        && !p.contains("/./")
        && !p.contains("/../")
        && !p.ends_with("/.")
        && !p.ends_with("/..")
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let r = canonical_path(path);
    assert!(clean(&r.canonical), "{path:?} -> {:?}", r.canonical);
    let again = canonical_path(&r.canonical);
    assert_eq!(again.canonical, r.canonical, "not idempotent for {path:?}");
    for other in &r.others {
        assert!(clean(other), "{path:?} -> reading {other:?}");
    }
});
