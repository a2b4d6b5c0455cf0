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

/// The post-mortem content (body of `PUT /v1/incidents/{id}/postmortem`). A missing field
/// reads as empty, so that validation names every field to fill in at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMortem {
    #[serde(default)]
    #[schema(value_type = crate::schema_items::Text20000, required = true)]
    pub lessons_learned: String,
    #[serde(default)]
    #[schema(value_type = crate::schema_items::Text20000, required = true)]
    pub root_cause: String,
    /// At least one.
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema_items::Text2000>, min_items = 1, max_items = 50, required = true)]
    pub attack_vectors: Vec<String>,
    /// What data was affected and how ("none" is an answer).
    #[serde(default)]
    #[schema(value_type = crate::schema_items::Text20000, required = true)]
    pub data_impact: String,
    /// Follow-up items, each with an owner.
    #[serde(default)]
    #[schema(max_items = 200, required = true)]
    pub follow_ups: Vec<FollowUp>,
    /// Policy or system changes decided.
    #[serde(default)]
    #[schema(value_type = crate::schema_items::FreeText20000)]
    pub policy_changes: String,
}

impl PostMortem {
    /// Check every field; return the normalised post-mortem, or every invalid field at once.
    pub fn validate(&self) -> CoreResult<PostMortem> {
        let mut errors = Vec::new();
        let mut keep = |r: CoreResult<String>| r.map_err(|e| errors.push(e)).unwrap_or_default();
        let lessons_learned = keep(check_text(
            "lessons_learned",
            &self.lessons_learned,
            20_000,
            true,
        ));
        let root_cause = keep(check_text("root_cause", &self.root_cause, 20_000, true));
        let data_impact = keep(check_text("data_impact", &self.data_impact, 20_000, true));
        let policy_changes = keep(check_text(
            "policy_changes",
            &self.policy_changes,
            20_000,
            false,
        ));
        let mut attack_vectors = Vec::new();
        if self.attack_vectors.is_empty() {
            errors.push(CoreError::invalid("attack_vectors", "give at least one"));
        } else if self.attack_vectors.len() > 50 {
            errors.push(CoreError::invalid("attack_vectors", "at most 50 entries"));
        } else {
            for (i, v) in self.attack_vectors.iter().enumerate() {
                match check_text(&format!("attack_vectors[{i}]"), v, 2000, true) {
                    Ok(v) => attack_vectors.push(v),
                    Err(e) => errors.push(e),
                }
            }
        }
        let mut follow_ups = Vec::new();
        if self.follow_ups.len() > 200 {
            errors.push(CoreError::invalid("follow_ups", "at most 200 entries"));
        } else {
            for (i, f) in self.follow_ups.iter().enumerate() {
                let item = check_text(&format!("follow_ups[{i}].item"), &f.item, 2000, true);
                let owner = check_name(&format!("follow_ups[{i}].owner"), &f.owner, 200);
                let due = f
                    .due
                    .as_deref()
                    .map(|d| check_name(&format!("follow_ups[{i}].due"), d, 40))
                    .transpose();
                match (item, owner, due) {
                    (Ok(item), Ok(owner), Ok(due)) => {
                        follow_ups.push(FollowUp { item, owner, due })
                    }
                    (item, owner, due) => {
                        errors.extend(item.err());
                        errors.extend(owner.err());
                        errors.extend(due.err());
                    }
                }
            }
        }
        if let Some(e) = CoreError::all(errors) {
            return Err(e);
        }
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

    #[test]
    fn an_empty_post_mortem_names_every_field_at_once() {
        let pm: PostMortem = serde_json::from_str("{}").unwrap();
        match pm.validate() {
            Err(CoreError::InvalidMany(list)) => {
                let fields: Vec<_> = list.iter().map(|(f, _)| f.as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "lessons_learned",
                        "root_cause",
                        "data_impact",
                        "attack_vectors"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
