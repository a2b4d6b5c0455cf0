//! The edge-policy integration tests, in one binary (one link instead of one per file): unit
//! tests of the compiled matcher per target, mode, isolation and action; property tests
//! against the naive reference and of the wire format; and an ignored sizing run with a
//! million rules.

#[path = "policy/common.rs"]
mod common;
#[path = "policy/dense_props.rs"]
mod dense_props;
#[path = "policy/matcher_units.rs"]
mod matcher_units;
#[path = "policy/million.rs"]
mod million;
#[path = "policy/props.rs"]
mod props;
#[path = "policy/wire_props.rs"]
mod wire_props;
