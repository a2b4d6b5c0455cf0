//! Alert intake: what a Prometheus Alertmanager webhook notification does. An alert group
//! (Alertmanager's `groupKey`) opens one incident; later notifications of the same group
//! (re-sends, new alerts in it, `resolved`) update that incident instead of opening others.
//! A configured label gives the severity, configured labels and annotations give
//! indicators, and configured rules may propose containment from an alert's labels (in
//! `simulate` mode unless the rule says `enforce: true`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::action::normalise_cidr;
use super::effects::NewTimelineEntry;
use super::incident::Severity;
use super::{CoreError, CoreResult};

/// One alert of a notification (Alertmanager webhook payload, version 4).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// Alertmanager's webhook notification (`webhook_config`, payload version 4). Unknown
/// fields are ignored: Alertmanager adds fields between releases.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmNotification {
    #[serde(default)]
    pub version: String,
    /// Identifies the alert group: the same key for every notification of the group.
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` (any alert firing) or `resolved` (all resolved).
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub alerts: Vec<AmAlert>,
}

/// A rule that proposes containment from an alert's labels.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProposalRule {
    /// Named on the timeline and in the action's reason.
    pub name: String,
    /// Label values an alert must have (all of them) for the rule to apply.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
    /// The label whose value is the address or CIDR to block.
    pub block_cidr_label: String,
    /// Enforce at once (guard rails still apply) instead of proposing in `simulate` mode.
    #[serde(default)]
    pub enforce: bool,
    /// How long the proposed block lasts (`1h`, `30m`, ...); none: until lifted.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// How notifications map to incidents (`--intake-config`, JSON).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// The label that carries the severity.
    pub severity_label: String,
    /// Its values (case-insensitive) to severities; a value not listed is read as a
    /// severity itself (`P1`, `critical`, `high`, ...), else `default_severity`.
    pub severity_map: BTreeMap<String, Severity>,
    pub default_severity: Severity,
    /// Labels and annotations whose values are client addresses or CIDRs.
    pub cidr_labels: Vec<String>,
    /// Labels and annotations whose values are `User-Agent` substrings.
    pub user_agent_labels: Vec<String>,
    /// Labels and annotations whose values are pixel ids (kept in the incident summary).
    pub pixel_labels: Vec<String>,
    pub rules: Vec<ProposalRule>,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            severity_label: "severity".into(),
            severity_map: BTreeMap::from([
                ("page".to_string(), Severity::P1),
                ("warning".to_string(), Severity::P2),
                ("info".to_string(), Severity::P3),
            ]),
            default_severity: Severity::P2,
            cidr_labels: vec!["client_ip".into(), "source_ip".into(), "src_ip".into()],
            user_agent_labels: vec!["user_agent".into()],
            pixel_labels: vec!["pixel_id".into()],
            rules: Vec::new(),
        }
    }
}

/// What a notification says, read with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertGroup {
    pub group_key: String,
    pub resolved: bool,
    pub title: String,
    pub summary: String,
    /// The highest severity among the alerts.
    pub severity: Severity,
    pub cidrs: Vec<String>,
    pub user_agents: Vec<String>,
    pub pixels: Vec<String>,
    pub firing: usize,
    pub total: usize,
}

/// A block an intake rule proposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub rule: String,
    pub cidr: String,
    pub enforce: bool,
    pub expires_in: Option<String>,
}

fn values<'a>(a: &'a AmAlert, names: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
    names.iter().flat_map(move |n| {
        a.labels
            .get(n)
            .into_iter()
            .chain(a.annotations.get(n))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    })
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !list.iter().any(|x| x == v) {
        list.push(v.to_string());
    }
}

impl IntakeConfig {
    fn severity_of(&self, a: &AmAlert) -> Severity {
        let Some(v) = a.labels.get(&self.severity_label) else {
            return self.default_severity;
        };
        let v = v.trim().to_ascii_lowercase();
        self.severity_map
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase() == v)
            .map(|(_, s)| *s)
            .or_else(|| v.parse().ok())
            .unwrap_or(self.default_severity)
    }

    /// Read a notification. Refused (naming the field) when it is not one Alertmanager
    /// sends: no group key, an unknown status.
    pub fn read(&self, n: &AmNotification) -> CoreResult<AlertGroup> {
        if n.group_key.trim().is_empty() || n.group_key.len() > 4096 {
            return Err(CoreError::invalid(
                "groupKey",
                "must be 1 to 4096 characters",
            ));
        }
        let resolved = match n.status.as_str() {
            "firing" => false,
            "resolved" => true,
            _ => return Err(CoreError::invalid("status", "expected firing or resolved")),
        };
        if n.alerts.len() > 10_000 {
            return Err(CoreError::invalid("alerts", "at most 10000 alerts"));
        }
        let name = n
            .common_labels
            .get("alertname")
            .or_else(|| n.group_labels.get("alertname"))
            .or_else(|| n.alerts.iter().find_map(|a| a.labels.get("alertname")))
            .cloned()
            .unwrap_or_else(|| "alert".into());
        let summary_of = |m: &BTreeMap<String, String>| {
            m.get("summary").or_else(|| m.get("description")).cloned()
        };
        let headline = summary_of(&n.common_annotations)
            .or_else(|| n.alerts.iter().find_map(|a| summary_of(&a.annotations)));
        let mut title = match &headline {
            Some(h) => format!("{name}: {h}"),
            None => name.clone(),
        };
        title = title.replace(['\n', '\r', '\t'], " ");
        title = title
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string();
        let mut g = AlertGroup {
            group_key: n.group_key.clone(),
            resolved,
            title,
            summary: String::new(),
            severity: Severity::P3,
            cidrs: Vec::new(),
            user_agents: Vec::new(),
            pixels: Vec::new(),
            firing: 0,
            total: n.alerts.len(),
        };
        let mut severity = None::<Severity>;
        let mut warnings = Vec::new();
        for a in &n.alerts {
            if a.status != "resolved" {
                g.firing += 1;
            }
            let s = self.severity_of(a);
            severity = Some(severity.map_or(s, |x| x.min(s)));
            for v in values(a, &self.cidr_labels) {
                // A value that is not an address is left out, not refused: one bad label
                // must not lose the alert.
                if let Ok(net) = normalise_cidr("indicator", v, &mut warnings) {
                    push_unique(&mut g.cidrs, &net.to_string());
                }
            }
            for v in values(a, &self.user_agent_labels) {
                if (3..=256).contains(&v.chars().count()) {
                    push_unique(&mut g.user_agents, v);
                }
            }
            for v in values(a, &self.pixel_labels) {
                if edge_policy::pixel::is_pixel_id(v) {
                    push_unique(&mut g.pixels, v);
                }
            }
        }
        g.severity = severity.unwrap_or(self.default_severity);
        let mut summary = format!(
            "From Alertmanager (receiver {:?}): {} of {} alerts firing.",
            n.receiver, g.firing, g.total
        );
        if let Some(h) = headline {
            summary.push_str(&format!("\n{h}"));
        }
        if !g.pixels.is_empty() {
            summary.push_str(&format!("\nPixels: {}", g.pixels.join(", ")));
        }
        if !n.external_url.is_empty() {
            summary.push_str(&format!("\nAlertmanager: {}", n.external_url));
        }
        g.summary = summary.chars().take(10_000).collect();
        g.cidrs.truncate(1000);
        g.user_agents.truncate(100);
        Ok(g)
    }

    /// The blocks the rules propose for the firing alerts, one per rule and address.
    pub fn proposals(&self, n: &AmNotification) -> Vec<Proposal> {
        let mut out: Vec<Proposal> = Vec::new();
        for a in n.alerts.iter().filter(|a| a.status != "resolved") {
            for r in &self.rules {
                if !r.when.iter().all(|(k, v)| a.labels.get(k) == Some(v)) {
                    continue;
                }
                let Some(v) = a.labels.get(&r.block_cidr_label) else {
                    continue;
                };
                let mut w = Vec::new();
                let Ok(net) = normalise_cidr("cidr", v, &mut w) else {
                    continue;
                };
                let cidr = net.to_string();
                if !out.iter().any(|p| p.rule == r.name && p.cidr == cidr) {
                    out.push(Proposal {
                        rule: r.name.clone(),
                        cidr,
                        enforce: r.enforce,
                        expires_in: r.expires_in.clone(),
                    });
                }
            }
        }
        out
    }
}

/// The timeline entry of a notification for an incident it opened or updates.
pub fn timeline_entry(
    incident_id: i64,
    g: &AlertGroup,
    opened: bool,
    now: i64,
) -> NewTimelineEntry {
    let (kind, message) = if opened {
        (
            "alert_opened",
            format!(
                "opened from an Alertmanager alert group: {} of {} alerts firing",
                g.firing, g.total
            ),
        )
    } else if g.resolved {
        (
            "alert_resolved",
            format!(
                "Alertmanager reports the alert group resolved ({} alerts)",
                g.total
            ),
        )
    } else {
        (
            "alert_updated",
            format!(
                "Alertmanager re-sent the alert group: {} of {} alerts firing",
                g.firing, g.total
            ),
        )
    };
    NewTimelineEntry::new(incident_id, now, "intake", kind, message).data(json!({
        "group_key": g.group_key, "severity": g.severity, "firing": g.firing, "total": g.total,
        "cidrs": g.cidrs, "user_agents": g.user_agents, "pixels": g.pixels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: &str, labels: &[(&str, &str)]) -> AmAlert {
        AmAlert {
            status: status.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..AmAlert::default()
        }
    }

    fn note(status: &str, alerts: Vec<AmAlert>) -> AmNotification {
        AmNotification {
            version: "4".into(),
            group_key: "{}:{alertname=\"Scraper\"}".into(),
            status: status.into(),
            receiver: "edge-containment".into(),
            common_labels: BTreeMap::from([("alertname".into(), "Scraper".into())]),
            common_annotations: BTreeMap::from([(
                "summary".into(),
                "one client pulls every order".into(),
            )]),
            alerts,
            ..AmNotification::default()
        }
    }

    #[test]
    fn a_group_reads_as_title_severity_and_indicators() {
        let cfg = IntakeConfig::default();
        let n = note(
            "firing",
            vec![
                alert(
                    "firing",
                    &[
                        ("severity", "warning"),
                        ("client_ip", "203.0.113.7"),
                        ("user_agent", "evil-bot/1.0"),
                    ],
                ),
                alert(
                    "firing",
                    &[
                        ("severity", "critical"),
                        ("client_ip", "::ffff:203.0.113.7"),
                    ],
                ),
                alert(
                    "resolved",
                    &[("client_ip", "not an ip"), ("pixel_id", "px-4711")],
                ),
            ],
        );
        let g = cfg.read(&n).unwrap();
        assert_eq!(g.title, "Scraper: one client pulls every order");
        assert_eq!(
            g.severity,
            Severity::P0,
            "critical is read as a severity itself"
        );
        assert_eq!(
            g.cidrs,
            ["203.0.113.7/32"],
            "de-duplicated, IPv4-mapped read as IPv4"
        );
        assert_eq!(g.user_agents, ["evil-bot/1.0"]);
        assert_eq!(g.pixels, ["px-4711"]);
        assert_eq!((g.firing, g.total), (2, 3));
        assert!(!g.resolved);
    }

    #[test]
    fn bad_notifications_name_the_field() {
        let cfg = IntakeConfig::default();
        let mut n = note("firing", vec![]);
        n.group_key = " ".into();
        assert!(
            matches!(cfg.read(&n), Err(CoreError::Invalid { field, .. }) if field == "groupKey")
        );
        let n = note("burning", vec![]);
        assert!(matches!(cfg.read(&n), Err(CoreError::Invalid { field, .. }) if field == "status"));
    }

    #[test]
    fn rules_propose_blocks_for_firing_alerts_only() {
        let cfg = IntakeConfig {
            rules: vec![ProposalRule {
                name: "scrapers".into(),
                when: BTreeMap::from([("alertname".into(), "Scraper".into())]),
                block_cidr_label: "client_ip".into(),
                enforce: false,
                expires_in: Some("1h".into()),
            }],
            ..IntakeConfig::default()
        };
        let n = note(
            "firing",
            vec![
                alert(
                    "firing",
                    &[("alertname", "Scraper"), ("client_ip", "203.0.113.7")],
                ),
                alert(
                    "firing",
                    &[("alertname", "Scraper"), ("client_ip", "203.0.113.7")],
                ),
                alert(
                    "resolved",
                    &[("alertname", "Scraper"), ("client_ip", "198.51.100.1")],
                ),
                alert(
                    "firing",
                    &[("alertname", "Other"), ("client_ip", "192.0.2.1")],
                ),
            ],
        );
        let p = cfg.proposals(&n);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].cidr, "203.0.113.7/32");
        assert!(!p[0].enforce);
    }
}
