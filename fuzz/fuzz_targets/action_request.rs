//! The control plane's action-request validation (the body of `POST
//! /v1/incidents/{id}/actions`): never a panic; a refusal names a field; an accepted
//! request compiles to a policy rule, and a stored path prefix is already canonical (the
//! edge matches it as stored).
#![no_main]

use control_plane::domain::action::{self, ActionRequest};
use control_plane::domain::CoreError;
use edge_policy::canon::canonical_path;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let req: ActionRequest = match control_plane::json::parse(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.field.is_empty());
            return;
        }
    };
    match action::validate(1, &req, NOW) {
        Ok(new) => {
            let rule = action::to_rule(
                1,
                1,
                new.kind,
                &new.target,
                new.isolation,
                new.mode,
                new.expires_at_ms,
            );
            assert!(rule.is_ok(), "{new:?}: {rule:?}");
            if new.target.ty == "path_prefix" {
                let c = canonical_path(&new.target.value);
                assert_eq!(c.canonical, new.target.value.as_str());
                assert!(!c.ambiguous, "{new:?}");
            }
            // Deterministic: the same request gives the same action.
            assert_eq!(action::validate(1, &req, NOW).ok(), Some(new));
        }
        Err(CoreError::Invalid { field, .. } | CoreError::GuardRail { field, .. }) => {
            assert!(!field.is_empty())
        }
        Err(e) => panic!("validation failed with {e:?}"),
    }
});
