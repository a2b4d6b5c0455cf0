//! The facts of an incident that the response policy and its documents need: impact,
//! indicators of compromise, and what GDPR asks an authority notification to state.

use edge_policy::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::action::normalise_cidr;
use super::{check_name, check_text, CoreError, CoreResult};

/// Indicators of compromise: access-log lines whose client matches one become evidence of
/// the incident (while it is open).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Indicators {
    /// Client addresses or CIDRs (`203.0.113.7`, `198.51.100.0/24`, `2001:db8::/48`).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub cidrs: Vec<IpNet>,
    /// Case-insensitive substrings of the `User-Agent` (3 to 256 characters each).
    #[serde(default)]
    pub user_agents: Vec<String>,
}

impl Indicators {
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.user_agents.is_empty()
    }
}

/// Indicators as a client sends them (CIDRs as strings, validated one by one).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndicatorsInput {
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema_items::CidrItem>, max_items = 1000)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::schema_items::UserAgentItem>, max_items = 100)]
    pub user_agents: Vec<String>,
}

/// The stored facts (JSON column `facts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct IncidentFacts {
    /// Who and what is affected, in words (internal alert, preliminary report).
    pub impact: String,
    pub indicators: Indicators,
    /// GDPR Art. 33(3)(a) / 34(2): the nature of the breach.
    pub breach_nature: String,
    /// Categories of personal data concerned (`email`, `payment card`, `health`).
    pub data_categories: Vec<String>,
    /// Approximate number of data subjects concerned.
    pub data_subjects_approx: Option<u64>,
    /// Approximate number of personal-data records concerned.
    pub records_approx: Option<u64>,
    /// Likely consequences of the breach.
    pub likely_consequences: String,
    /// Measures taken or proposed to address the breach and mitigate its effects.
    pub measures_taken: String,
    /// The heading customers see (the customer notification): never the internal title,
    /// which may name indicators or internal systems.
    pub customer_title: String,
    /// What customers are told happened, in their terms.
    pub customer_summary: String,
}

/// A validated change to the facts: `Some` fields replace the stored value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FactsChange {
    pub impact: Option<String>,
    pub indicators: Option<Indicators>,
    pub breach_nature: Option<String>,
    pub data_categories: Option<Vec<String>>,
    pub data_subjects_approx: Option<u64>,
    pub records_approx: Option<u64>,
    pub likely_consequences: Option<String>,
    pub measures_taken: Option<String>,
    pub customer_title: Option<String>,
    pub customer_summary: Option<String>,
    /// Normalisations applied (host bits cleared in a CIDR).
    pub warnings: Vec<String>,
}

/// Facts as a client sends them (in `POST /v1/incidents` and `PATCH /v1/incidents/{id}`).
#[derive(Clone, Debug, Default)]
pub struct FactsInput<'a> {
    pub impact: Option<&'a str>,
    pub indicators: Option<&'a IndicatorsInput>,
    pub breach_nature: Option<&'a str>,
    pub data_categories: Option<&'a [String]>,
    pub data_subjects_approx: Option<u64>,
    pub records_approx: Option<u64>,
    pub likely_consequences: Option<&'a str>,
    pub measures_taken: Option<&'a str>,
    pub customer_title: Option<&'a str>,
    pub customer_summary: Option<&'a str>,
}

/// Largest plausible count of data subjects or records.
pub const MAX_COUNT: u64 = 100_000_000_000;

fn count(field: &str, v: Option<u64>) -> CoreResult<Option<u64>> {
    match v {
        Some(n) if n > MAX_COUNT => Err(CoreError::invalid(field, "implausibly large")),
        v => Ok(v),
    }
}

impl FactsInput<'_> {
    pub fn validate(&self) -> CoreResult<FactsChange> {
        let text = |field: &str, v: Option<&str>| {
            v.map(|s| check_text(field, s, 10_000, false)).transpose()
        };
        let mut warnings = Vec::new();
        let indicators = match self.indicators {
            None => None,
            Some(i) => {
                if i.cidrs.len() > 1000 {
                    return Err(CoreError::invalid(
                        "indicators.cidrs",
                        "at most 1000 entries",
                    ));
                }
                if i.user_agents.len() > 100 {
                    return Err(CoreError::invalid(
                        "indicators.user_agents",
                        "at most 100 entries",
                    ));
                }
                let mut cidrs = Vec::with_capacity(i.cidrs.len());
                for (n, c) in i.cidrs.iter().enumerate() {
                    let net = normalise_cidr(&format!("indicators.cidrs[{n}]"), c, &mut warnings)?;
                    if !cidrs.contains(&net) {
                        cidrs.push(net);
                    }
                }
                let mut user_agents = Vec::with_capacity(i.user_agents.len());
                for (n, ua) in i.user_agents.iter().enumerate() {
                    let field = format!("indicators.user_agents[{n}]");
                    let ua = check_name(&field, ua, 256)?;
                    if ua.chars().count() < 3 {
                        return Err(CoreError::invalid(field, "must be at least 3 characters"));
                    }
                    user_agents.push(ua);
                }
                Some(Indicators { cidrs, user_agents })
            }
        };
        let data_categories = match self.data_categories {
            None => None,
            Some(c) if c.len() > 50 => {
                return Err(CoreError::invalid("data_categories", "at most 50 entries"))
            }
            Some(c) => Some(
                c.iter()
                    .enumerate()
                    .map(|(i, s)| check_name(&format!("data_categories[{i}]"), s, 200))
                    .collect::<CoreResult<Vec<_>>>()?,
            ),
        };
        Ok(FactsChange {
            impact: text("impact", self.impact)?,
            indicators,
            breach_nature: text("breach_nature", self.breach_nature)?,
            data_categories,
            data_subjects_approx: count("data_subjects_approx", self.data_subjects_approx)?,
            records_approx: count("records_approx", self.records_approx)?,
            likely_consequences: text("likely_consequences", self.likely_consequences)?,
            measures_taken: text("measures_taken", self.measures_taken)?,
            customer_title: self
                .customer_title
                .map(|t| check_name("customer_title", t, 200))
                .transpose()?,
            customer_summary: text("customer_summary", self.customer_summary)?,
            warnings,
        })
    }
}

impl FactsChange {
    pub fn is_empty(&self) -> bool {
        self.impact.is_none()
            && self.indicators.is_none()
            && self.breach_nature.is_none()
            && self.data_categories.is_none()
            && self.data_subjects_approx.is_none()
            && self.records_approx.is_none()
            && self.likely_consequences.is_none()
            && self.measures_taken.is_none()
            && self.customer_title.is_none()
            && self.customer_summary.is_none()
    }

    /// Apply to `facts`; returns the names of the fields whose value changed.
    pub fn apply(&self, facts: &mut IncidentFacts) -> Vec<&'static str> {
        let mut changed = Vec::new();
        fn set<T: PartialEq + Clone>(
            changed: &mut Vec<&'static str>,
            name: &'static str,
            slot: &mut T,
            v: &Option<T>,
        ) {
            if let Some(v) = v {
                if slot != v {
                    *slot = v.clone();
                    changed.push(name);
                }
            }
        }
        set(&mut changed, "impact", &mut facts.impact, &self.impact);
        set(
            &mut changed,
            "indicators",
            &mut facts.indicators,
            &self.indicators,
        );
        set(
            &mut changed,
            "breach_nature",
            &mut facts.breach_nature,
            &self.breach_nature,
        );
        set(
            &mut changed,
            "data_categories",
            &mut facts.data_categories,
            &self.data_categories,
        );
        set(
            &mut changed,
            "data_subjects_approx",
            &mut facts.data_subjects_approx,
            &self.data_subjects_approx.map(Some),
        );
        set(
            &mut changed,
            "records_approx",
            &mut facts.records_approx,
            &self.records_approx.map(Some),
        );
        set(
            &mut changed,
            "likely_consequences",
            &mut facts.likely_consequences,
            &self.likely_consequences,
        );
        set(
            &mut changed,
            "measures_taken",
            &mut facts.measures_taken,
            &self.measures_taken,
        );
        set(
            &mut changed,
            "customer_title",
            &mut facts.customer_title,
            &self.customer_title,
        );
        set(
            &mut changed,
            "customer_summary",
            &mut facts.customer_summary,
            &self.customer_summary,
        );
        changed
    }
}

/// The facts GDPR Art. 33(3) asks an authority notification to state, that are missing.
/// `dpo_contact` is the configured contact of the data protection officer.
pub fn missing_for_authority(f: &IncidentFacts, dpo_contact: Option<&str>) -> Vec<String> {
    let mut m = Vec::new();
    if f.breach_nature.is_empty() {
        m.push("breach_nature");
    }
    if f.data_categories.is_empty() {
        m.push("data_categories");
    }
    if f.data_subjects_approx.is_none() {
        m.push("data_subjects_approx");
    }
    if f.records_approx.is_none() {
        m.push("records_approx");
    }
    if dpo_contact.is_none_or(|d| d.trim().is_empty()) {
        m.push("dpo_contact");
    }
    if f.likely_consequences.is_empty() {
        m.push("likely_consequences");
    }
    if f.measures_taken.is_empty() {
        m.push("measures_taken");
    }
    m.into_iter().map(String::from).collect()
}

/// The facts GDPR Art. 34(2) asks a notification of data subjects (customers) to state.
/// Customers also get a title and summary of their own, never the internal ones.
pub fn missing_for_customers(f: &IncidentFacts, dpo_contact: Option<&str>) -> Vec<String> {
    let mut m = Vec::new();
    if f.customer_title.is_empty() {
        m.push("customer_title");
    }
    if f.customer_summary.is_empty() {
        m.push("customer_summary");
    }
    if f.breach_nature.is_empty() {
        m.push("breach_nature");
    }
    if dpo_contact.is_none_or(|d| d.trim().is_empty()) {
        m.push("dpo_contact");
    }
    if f.likely_consequences.is_empty() {
        m.push("likely_consequences");
    }
    if f.measures_taken.is_empty() {
        m.push("measures_taken");
    }
    m.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_are_validated_and_normalised() {
        let i = IndicatorsInput {
            cidrs: vec!["203.0.113.7/24".into(), "2001:db8::1".into()],
            user_agents: vec!["evil-bot".into()],
        };
        let c = FactsInput {
            indicators: Some(&i),
            ..FactsInput::default()
        }
        .validate()
        .unwrap();
        let ind = c.indicators.unwrap();
        assert_eq!(ind.cidrs[0].to_string(), "203.0.113.0/24");
        assert_eq!(ind.cidrs[1].to_string(), "2001:db8::1/128");
        assert_eq!(c.warnings.len(), 1);
        let bad = IndicatorsInput {
            cidrs: vec!["10.0.0.1".into(), "nope".into()],
            user_agents: vec![],
        };
        let e = FactsInput {
            indicators: Some(&bad),
            ..FactsInput::default()
        }
        .validate()
        .unwrap_err();
        assert!(matches!(e, CoreError::Invalid { field, .. } if field == "indicators.cidrs[1]"));
        let short = IndicatorsInput {
            cidrs: vec![],
            user_agents: vec!["ab".into()],
        };
        let e = FactsInput {
            indicators: Some(&short),
            ..FactsInput::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(e, CoreError::Invalid { field, .. } if field == "indicators.user_agents[0]")
        );
    }

    #[test]
    fn missing_facts_are_all_named() {
        let f = IncidentFacts::default();
        assert_eq!(
            missing_for_authority(&f, None),
            [
                "breach_nature",
                "data_categories",
                "data_subjects_approx",
                "records_approx",
                "dpo_contact",
                "likely_consequences",
                "measures_taken"
            ]
        );
        let full = IncidentFacts {
            breach_nature: "n".into(),
            data_categories: vec!["email".into()],
            data_subjects_approx: Some(0),
            records_approx: Some(0),
            likely_consequences: "c".into(),
            measures_taken: "m".into(),
            ..IncidentFacts::default()
        };
        assert!(missing_for_authority(&full, Some("dpo@example.com")).is_empty());
        assert_eq!(
            missing_for_customers(&full, Some(" ")),
            ["customer_title", "customer_summary", "dpo_contact"]
        );
    }

    #[test]
    fn apply_reports_changed_fields() {
        let mut f = IncidentFacts::default();
        let c = FactsChange {
            impact: Some("checkout".into()),
            records_approx: Some(3),
            ..FactsChange::default()
        };
        assert_eq!(c.apply(&mut f), ["impact", "records_approx"]);
        assert!(c.apply(&mut f).is_empty());
    }
}
