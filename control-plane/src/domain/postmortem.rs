//! The post-mortem: lessons learned, root cause, attack vectors, data impact and follow-up
//! items with owners. Required before an incident with personal data can be closed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_name, check_text, CoreError, CoreResult};

/// A follow-up item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    #[schema(value_type = crate::schema_items::Text2000)]
    pub item: String,
    /// Who owns it (a person or team).
    #[schema(value_type = crate::schema_items::Name200)]
    pub owner: String,
    /// Optional due date, as the client wrote it (`2026-04-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema_items::Name40>)]
    pub due: Option<String>,
}

/// The post-mortem content (body of `PUT /v1/incidents/{id}/postmortem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMortem {
    #[schema(value_type = crate::schema_items::Text20000)]
    pub lessons_learned: String,
    #[schema(value_type = crate::schema_items::Text20000)]
    pub root_cause: String,
    /// At least one.
    #[schema(value_type = Vec<crate::schema_items::Text2000>, min_items = 1, max_items = 50)]
    pub attack_vectors: Vec<String>,
    /// What data was affected and how ("none" is an answer).
    #[schema(value_type = crate::schema_items::Text20000)]
    pub data_impact: String,
    /// Follow-up items, each with an owner.
    #[schema(max_items = 200)]
    pub follow_ups: Vec<FollowUp>,
    /// Policy or system changes decided.
    #[serde(default)]
    #[schema(value_type = crate::schema_items::FreeText20000)]
    pub policy_changes: String,
}

impl PostMortem {
    /// Check every field; return the normalised post-mortem.
    pub fn validate(&self) -> CoreResult<PostMortem> {
        let lessons_learned = check_text("lessons_learned", &self.lessons_learned, 20_000, true)?;
        let root_cause = check_text("root_cause", &self.root_cause, 20_000, true)?;
        let data_impact = check_text("data_impact", &self.data_impact, 20_000, true)?;
        let policy_changes = check_text("policy_changes", &self.policy_changes, 20_000, false)?;
        if self.attack_vectors.is_empty() {
            return Err(CoreError::invalid("attack_vectors", "give at least one"));
        }
        if self.attack_vectors.len() > 50 {
            return Err(CoreError::invalid("attack_vectors", "at most 50 entries"));
        }
        let attack_vectors = self
            .attack_vectors
            .iter()
            .enumerate()
            .map(|(i, v)| check_text(&format!("attack_vectors[{i}]"), v, 2000, true))
            .collect::<CoreResult<Vec<_>>>()?;
        if self.follow_ups.len() > 200 {
            return Err(CoreError::invalid("follow_ups", "at most 200 entries"));
        }
        let follow_ups = self
            .follow_ups
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Ok(FollowUp {
                    item: check_text(&format!("follow_ups[{i}].item"), &f.item, 2000, true)?,
                    owner: check_name(&format!("follow_ups[{i}].owner"), &f.owner, 200)?,
                    due: f
                        .due
                        .as_deref()
                        .map(|d| check_name(&format!("follow_ups[{i}].due"), d, 40))
                        .transpose()?,
                })
            })
            .collect::<CoreResult<Vec<_>>>()?;
        Ok(PostMortem {
            lessons_learned,
            root_cause,
            attack_vectors,
            data_impact,
            follow_ups,
            policy_changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field() {
        let pm = PostMortem {
            lessons_learned: "l".into(),
            root_cause: "r".into(),
            attack_vectors: vec!["v".into()],
            data_impact: "none".into(),
            follow_ups: vec![FollowUp {
                item: "i".into(),
                owner: " ".into(),
                due: None,
            }],
            policy_changes: String::new(),
        };
        match pm.validate() {
            Err(CoreError::Invalid { field, .. }) => assert_eq!(field, "follow_ups[0].owner"),
            other => panic!("{other:?}"),
        }
        let mut ok = pm.clone();
        ok.follow_ups[0].owner = "web team".into();
        assert!(ok.validate().is_ok());
        ok.attack_vectors.clear();
        assert!(ok.validate().is_err());
    }
}
