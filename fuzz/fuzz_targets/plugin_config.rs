//! The plugin configuration parser: never a panic; an error names a field; an accepted
//! configuration serialises to one that parses back equal.
#![no_main]

use edge_policy::config::FilterConfig;
use edge_policy::facts::Extractor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match FilterConfig::parse(data) {
        Ok(cfg) => {
            let json = serde_json::to_vec(&cfg).expect("serialises");
            let back = FilterConfig::parse(&json).expect("parses back");
            assert_eq!(back, cfg);
            assert!(cfg.control_plane.trust().is_ok());
            Extractor::new(&cfg).expect("a parsed configuration compiles");
        }
        Err(e) => assert!(!e.field.is_empty()),
    }
});
