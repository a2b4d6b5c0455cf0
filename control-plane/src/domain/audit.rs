//! The audit chain: every event's hash covers its content and the previous event's hash.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The hash the first event chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event as stored, listed and exported: the one place its fields are spelled.
/// `before`/`after` are the exact JSON texts that were hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ExportedEvent)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub verb: String,
    pub object: String,
    pub incident_id: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit event a decision asks to append; the store gives it its place in the chain
/// with [`AuditRecord::chained`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    pub actor: String,
    pub verb: String,
    pub object: String,
    pub incident_id: Option<i64>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
}

impl NewAuditEvent {
    /// An event without before, after or reason (add them with the builders below).
    pub fn new(actor: &str, verb: &str, object: String, incident_id: Option<i64>) -> Self {
        NewAuditEvent {
            actor: actor.to_string(),
            verb: verb.to_string(),
            object,
            incident_id,
            before: None,
            after: None,
            reason: None,
        }
    }
    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }
    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }
    pub fn reason(mut self, r: Option<&str>) -> Self {
        self.reason = r.map(str::to_string);
        self
    }
}

impl AuditRecord {
    /// `e` as the event after `last` (the chain's last `(seq, hash)`, `None` when empty),
    /// recorded at `at` (RFC 3339), with its hash computed.
    pub fn chained(last: Option<(i64, String)>, at: String, e: NewAuditEvent) -> AuditRecord {
        let (prev_seq, prev_hash) = last.unwrap_or((0, GENESIS_HASH.to_string()));
        let mut r = AuditRecord {
            seq: prev_seq + 1,
            at,
            actor: e.actor,
            verb: e.verb,
            object: e.object,
            incident_id: e.incident_id,
            before: e.before.as_ref().map(Value::to_string),
            after: e.after.as_ref().map(Value::to_string),
            reason: e.reason,
            prev_hash,
            hash: String::new(),
        };
        r.hash = r.expected_hash();
        r
    }

    /// The hash this record should carry: SHA-256 (hex) over the compact JSON array
    /// `[seq, at, actor, verb, object, incident_id, before, after, reason, prev_hash]`,
    /// where `before`/`after` are the stored JSON texts (as strings) and absent values are
    /// `null` (see [`HASH_RULE`]).
    pub fn expected_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.at,
            self.actor,
            self.verb,
            self.object,
            self.incident_id,
            self.before,
            self.after,
            self.reason,
            self.prev_hash
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// How an audit event's hash is computed, for readers of an export (also in API.md).
pub const HASH_RULE: &str = "hash = hex(SHA-256(UTF-8 of the compact JSON array [seq, at, actor, verb, object, incident_id, before, after, reason, prev_hash])); before/after are the JSON texts exactly as exported (strings, or null); absent values are null; the first event's prev_hash is 64 zeros; every event's prev_hash is the hash of the event with seq - 1";

/// The first broken link of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub problem: String,
}

/// Incremental chain checker: feed records in sequence order.
#[derive(Debug)]
pub struct ChainVerifier {
    prev_seq: i64,
    prev_hash: String,
    pub checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            prev_seq: 0,
            prev_hash: GENESIS_HASH.to_string(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// The hash of the last intact event (the genesis hash before any): anchor it outside
    /// the database to detect truncation of the log's tail.
    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }

    /// Check the next record; the first problem found is returned.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), BrokenLink> {
        let broken = |problem: &str| BrokenLink {
            seq: r.seq,
            problem: problem.to_string(),
        };
        if r.seq != self.prev_seq + 1 {
            return Err(broken(&format!(
                "sequence gap: expected {}, found {}",
                self.prev_seq + 1,
                r.seq
            )));
        }
        if r.prev_hash != self.prev_hash {
            return Err(broken("prev_hash does not match the previous event's hash"));
        }
        if r.expected_hash() != r.hash {
            return Err(broken("hash does not match the event's content"));
        }
        self.prev_seq = r.seq;
        self.prev_hash = r.hash.clone();
        self.checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    at: "2024-05-01T12:00:00.000Z".into(),
                    actor: "alice".into(),
                    verb: "action.create".into(),
                    object: format!("action/{seq}"),
                    incident_id: Some(1),
                    before: None,
                    after: Some(format!("{{\"id\":{seq}}}")),
                    reason: Some("why".into()),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = r.expected_hash();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn verify(rs: &[AuditRecord]) -> Result<u64, BrokenLink> {
        let mut v = ChainVerifier::default();
        for r in rs {
            v.check(r)?;
        }
        Ok(v.checked)
    }

    #[test]
    fn chained_events_link_and_hash() {
        let e = |n: i64| {
            NewAuditEvent::new("alice", "action.create", format!("action/{n}"), Some(1))
                .after(serde_json::json!({"id": n}))
                .reason(Some("why"))
        };
        let first = AuditRecord::chained(None, "2024-05-01T12:00:00.000Z".into(), e(1));
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS_HASH));
        assert_eq!(first.after.as_deref(), Some("{\"id\":1}"));
        let second = AuditRecord::chained(
            Some((first.seq, first.hash.clone())),
            "2024-05-01T12:00:01.000Z".into(),
            e(2),
        );
        assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
        assert_eq!(verify(&[first, second]), Ok(2));
    }

    #[test]
    fn hash_is_stable() {
        // The exported rule is a contract: this value must never change.
        // (Computed independently: SHA-256 of the compact JSON array.)
        assert_eq!(
            chain(1)[0].hash,
            "dd23766cc746055fefc360e7ce3ea9198565f84baf5d1ba927a36fa1a8e6c39a"
        );
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn every_field_is_covered() {
        let edits: [fn(&mut AuditRecord); 9] = [
            |r| r.at.push('1'),
            |r| r.actor.push('x'),
            |r| r.verb.push('x'),
            |r| r.object.push('x'),
            |r| r.incident_id = Some(2),
            |r| r.before = Some("{}".into()),
            |r| r.after = None,
            |r| r.reason = None,
            |r| r.hash = r.hash.replace(|c: char| c.is_ascii_digit(), "a"),
        ];
        for edit in edits {
            let mut rs = chain(5);
            edit(&mut rs[2]);
            assert_eq!(verify(&rs).unwrap_err().seq, 3);
        }
    }

    #[test]
    fn gaps_and_relinks_are_found() {
        let mut rs = chain(5);
        rs.remove(1);
        assert_eq!(verify(&rs).unwrap_err().seq, 3);
        // Recomputing one hash breaks the next link.
        let mut rs = chain(5);
        rs[1].reason = Some("rewritten".into());
        rs[1].hash = rs[1].expected_hash();
        let b = verify(&rs).unwrap_err();
        assert_eq!(b.seq, 3);
        assert!(b.problem.contains("prev_hash"));
    }
}
