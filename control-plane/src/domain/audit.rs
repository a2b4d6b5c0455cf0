//! The audit chain: every event's hash covers its content and the previous event's hash.

use sha2::{Digest, Sha256};

/// The hash the first event chains to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event as stored (before/after are canonical JSON text).
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// SHA-256 (hex) over the canonical serialisation of an event: the JSON array
/// `[seq, at, actor, verb, object, incident_id, before, after, reason, prev_hash]`, where
/// `before`/`after` are the stored JSON texts (as strings) and absent values are `null`.
#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    seq: i64,
    at: &str,
    actor: &str,
    verb: &str,
    object: &str,
    incident_id: Option<i64>,
    before: Option<&str>,
    after: Option<&str>,
    reason: Option<&str>,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        seq,
        at,
        actor,
        verb,
        object,
        incident_id,
        before,
        after,
        reason,
        prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl AuditRecord {
    /// The hash this record should carry.
    pub fn expected_hash(&self) -> String {
        event_hash(
            self.seq,
            &self.at,
            &self.actor,
            &self.verb,
            &self.object,
            self.incident_id,
            self.before.as_deref(),
            self.after.as_deref(),
            self.reason.as_deref(),
            &self.prev_hash,
        )
    }
}

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
