//! Documents rendered from the incident's own data: the internal alert, the preliminary
//! report and the customer notification. A document that would have a blank is refused,
//! naming every missing fact.

use std::fmt::Write;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::describe_action;
use crate::clock::rfc3339;
use crate::domain::deadline::Deadline;
use crate::domain::settings::OrgSettings;
use crate::store::{ActionRecord, IncidentRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    InternalAlert,
    PreliminaryReport,
    CustomerNotification,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 3] = [
        DocumentKind::InternalAlert,
        DocumentKind::PreliminaryReport,
        DocumentKind::CustomerNotification,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::InternalAlert => "internal_alert",
            DocumentKind::PreliminaryReport => "preliminary_report",
            DocumentKind::CustomerNotification => "customer_notification",
        }
    }
}

impl FromStr for DocumentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                "expected internal_alert, preliminary_report or customer_notification".into()
            })
    }
}

/// A rendered document.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub kind: DocumentKind,
    pub incident_id: i64,
    pub generated_at: String,
    pub title: String,
    /// The document's facts, by name.
    #[schema(value_type = Object)]
    pub fields: Value,
    /// The same document as Markdown.
    pub markdown: String,
}

/// What a document is made from.
pub struct Sources<'a> {
    pub incident: &'a IncidentRecord,
    pub actions: &'a [ActionRecord],
    pub deadlines: &'a [Deadline],
    /// The organisation settings in effect (company name, DPO contact, security mailbox).
    pub org: &'a OrgSettings,
    pub now: i64,
}

fn require(missing: &mut Vec<String>, name: &str, present: bool) {
    if !present {
        missing.push(name.to_string());
    }
}

/// The facts `kind` needs that the incident lacks (every one).
pub fn missing(kind: DocumentKind, s: &Sources<'_>) -> Vec<String> {
    let i = s.incident;
    let f = &i.facts;
    let mut m = Vec::new();
    match kind {
        DocumentKind::InternalAlert => {
            require(&mut m, "summary", !i.summary.is_empty());
            require(&mut m, "impact", !f.impact.is_empty());
            require(&mut m, "next_update_at", i.next_update_at.is_some());
        }
        DocumentKind::PreliminaryReport => {
            require(&mut m, "summary", !i.summary.is_empty());
            require(&mut m, "impact", !f.impact.is_empty());
            require(&mut m, "systems_affected", !i.systems.is_empty());
            require(&mut m, "next_update_at", i.next_update_at.is_some());
        }
        DocumentKind::CustomerNotification => {
            require(&mut m, "customer_title", !f.customer_title.is_empty());
            require(&mut m, "customer_summary", !f.customer_summary.is_empty());
            require(&mut m, "breach_nature", !f.breach_nature.is_empty());
            require(
                &mut m,
                "dpo_contact",
                s.org
                    .dpo_contact
                    .as_deref()
                    .is_some_and(|d| !d.trim().is_empty()),
            );
            require(
                &mut m,
                "likely_consequences",
                !f.likely_consequences.is_empty(),
            );
            require(&mut m, "measures_taken", !f.measures_taken.is_empty());
        }
    }
    m
}

fn bullets(out: &mut String, items: &[String], empty: &str) {
    if items.is_empty() {
        let _ = writeln!(out, "- {empty}");
    }
    for i in items {
        let _ = writeln!(out, "- {i}");
    }
}

/// Render `kind`, or name every missing fact.
pub fn render(kind: DocumentKind, s: &Sources<'_>) -> Result<Document, Vec<String>> {
    let missing = missing(kind, s);
    if !missing.is_empty() {
        return Err(missing);
    }
    let i = s.incident;
    let f = &i.facts;
    let now = rfc3339(s.now);
    let actions: Vec<String> = s
        .actions
        .iter()
        .map(|a| describe_action(a, s.now))
        .collect();
    let next_update = i.next_update_at.map(rfc3339);
    let mut md = String::new();
    let (title, fields) = match kind {
        DocumentKind::InternalAlert => {
            let title = format!("[{}] Security incident #{}: {}", i.severity, i.id, i.title);
            let _ = writeln!(md, "# {title}\n");
            let _ = writeln!(md, "- **Severity:** {}", i.severity);
            let _ = writeln!(md, "- **Time (UTC):** {now}");
            let _ = writeln!(md, "- **Detected (UTC):** {}", rfc3339(i.detected_at));
            let _ = writeln!(md, "- **Phase:** {}", i.phase.as_str());
            let _ = writeln!(md, "\n## Summary\n\n{}\n", i.summary);
            let _ = writeln!(md, "## Impact\n\n{}\n", f.impact);
            let _ = writeln!(md, "## Actions taken so far\n");
            bullets(&mut md, &actions, "No containment action yet.");
            let _ = writeln!(
                md,
                "\n## Next update\n\n{}",
                next_update.as_deref().unwrap_or("")
            );
            if let Some(to) = &s.org.security_mailbox {
                let _ = writeln!(md, "- **To:** {to}");
            }
            let fields = json!({"severity": i.severity, "time_utc": now, "detected_at": rfc3339(i.detected_at),
                "to": s.org.security_mailbox, "phase": i.phase, "summary": i.summary, "impact": f.impact, "actions_taken": actions,
                "next_update_at": next_update});
            (title, fields)
        }
        DocumentKind::PreliminaryReport => {
            let title = format!("Preliminary report — incident #{}: {}", i.id, i.title);
            let _ = writeln!(md, "# {title}\n");
            let _ = writeln!(md, "- **Severity:** {}", i.severity);
            let _ = writeln!(md, "- **Phase:** {}", i.phase.as_str());
            let _ = writeln!(md, "- **Detected (UTC):** {}", rfc3339(i.detected_at));
            let _ = writeln!(md, "- **Reported (UTC):** {}", rfc3339(i.reported_at));
            let _ = writeln!(md, "- **Report time (UTC):** {now}");
            let _ = writeln!(md, "- **Systems affected:** {}", i.systems.join(", "));
            let yn = |b: bool| if b { "yes" } else { "no" };
            let _ = writeln!(md, "- **Personal data involved:** {}", yn(i.personal_data));
            let _ = writeln!(md, "- **Health data involved:** {}", yn(i.health_data));
            if let Some(a) = i.aware_at {
                let _ = writeln!(md, "- **Aware of the breach (UTC):** {}", rfc3339(a));
            }
            let _ = writeln!(md, "\n## Summary\n\n{}\n", i.summary);
            let _ = writeln!(md, "## Impact\n\n{}\n", f.impact);
            let _ = writeln!(md, "## Containment actions\n");
            bullets(&mut md, &actions, "No containment action yet.");
            let _ = writeln!(
                md,
                "\n## Deadlines\n\n| deadline | due (UTC) | status |\n|---|---|---|"
            );
            let deadlines: Vec<Value> = s
                .deadlines
                .iter()
                .map(|d| {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} |",
                        d.kind,
                        rfc3339(d.due_at),
                        d.status.as_str()
                    );
                    json!({"kind": d.kind, "due_at": rfc3339(d.due_at), "status": d.status})
                })
                .collect();
            let _ = writeln!(
                md,
                "\n## Next update\n\n{}",
                next_update.as_deref().unwrap_or("")
            );
            let fields = json!({"severity": i.severity, "phase": i.phase, "detected_at": rfc3339(i.detected_at),
                "reported_at": rfc3339(i.reported_at), "report_time_utc": now, "systems_affected": i.systems,
                "personal_data": i.personal_data, "health_data": i.health_data, "aware_at": i.aware_at.map(rfc3339),
                "summary": i.summary, "impact": f.impact, "actions_taken": actions, "deadlines": deadlines,
                "next_update_at": next_update});
            (title, fields)
        }
        DocumentKind::CustomerNotification => {
            // Customers see their own title and summary, never the internal ones.
            let title = format!("Notice of a personal data breach: {}", f.customer_title);
            let dpo = s.org.dpo_contact.as_deref().unwrap_or("");
            let company = s.org.company_name.as_deref();
            let _ = writeln!(md, "# {title}\n");
            if let Some(c) = company {
                let _ = writeln!(md, "From: {c}\n");
            }
            let _ = writeln!(md, "Date: {now}\n");
            let _ = writeln!(md, "## What happened\n\n{}\n", f.customer_summary);
            let _ = writeln!(md, "## Nature of the breach\n\n{}\n", f.breach_nature);
            if !f.data_categories.is_empty() {
                let _ = writeln!(
                    md,
                    "## Data concerned\n\n{}\n",
                    f.data_categories.join(", ")
                );
            }
            let _ = writeln!(md, "## Likely consequences\n\n{}\n", f.likely_consequences);
            let _ = writeln!(md, "## What we have done\n\n{}\n", f.measures_taken);
            let _ = writeln!(md, "## Contact\n\nOur data protection officer: {dpo}");
            let fields = json!({"date_utc": now, "company_name": company, "customer_title": f.customer_title,
                "customer_summary": f.customer_summary, "breach_nature": f.breach_nature,
                "data_categories": f.data_categories, "likely_consequences": f.likely_consequences,
                "measures_taken": f.measures_taken, "dpo_contact": dpo});
            (title, fields)
        }
    };
    Ok(Document {
        kind,
        incident_id: i.id,
        generated_at: now,
        title,
        fields,
        markdown: md,
    })
}
