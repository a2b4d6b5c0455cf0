//! `POST /v1/intake/alertmanager`: Prometheus Alertmanager's webhook. An alert group opens
//! one incident; re-sends and `resolved` update it (see [`crate::domain::intake`]).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, Intakes};
use crate::domain::action::{self, ActionRequest};
use crate::domain::facts::{FactsChange, FactsInput, IndicatorsInput};
use crate::domain::incident::{ChangeInput, IncidentChange, NewIncident};
use crate::domain::intake::AmNotification;
use crate::domain::CoreError;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(alertmanager))
}

/// What a notification did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IntakeOutcome {
    /// The group's incident (null: a `resolved` notification of a group never seen).
    pub incident_id: Option<i64>,
    /// Whether this notification opened it.
    pub opened: bool,
    /// Actions the intake rules proposed now (ids); a proposal already live is not repeated.
    pub proposed: Vec<i64>,
    /// Proposals refused (guard rails, invalid values), with the reason.
    pub refused: Vec<String>,
}

/// Alertmanager's webhook (`webhook_configs`, payload version 4). Roles: `intake` (and
/// admin). A new alert group opens an incident (title from `alertname` and the `summary`
/// annotation, severity from the configured label, indicators from the configured labels);
/// a notification of a known group updates its incident's timeline (a more severe alert
/// raises the severity, new addresses are added to the indicators; `resolved` is recorded,
/// the incident stays open for a responder). Intake rules may propose blocks, in
/// `simulate` mode unless the rule says `enforce`.
#[utoipa::path(post, path = "/v1/intake/alertmanager", tag = "incidents",
    request_body(content = AmNotification, example = json!({"version": "4", "groupKey": "{}:{alertname=\"Scraper\"}",
        "status": "firing", "receiver": "edge-containment", "groupLabels": {"alertname": "Scraper"},
        "commonLabels": {"alertname": "Scraper", "severity": "page"}, "commonAnnotations": {"summary": "one client pulls every order"},
        "externalURL": "http://alertmanager:9093", "alerts": [{"status": "firing",
        "labels": {"alertname": "Scraper", "severity": "page", "client_ip": "203.0.113.7"}, "annotations": {},
        "startsAt": "2026-12-01T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "a1"}]})),
    responses((status = 200, body = IntakeOutcome),
        (status = 422, description = "not an Alertmanager notification (`groupKey`, `status` named)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn alertmanager(
    State(s): State<AppState>,
    _auth: Auth<Intakes>,
    ApiJson(n): ApiJson<AmNotification>,
) -> ApiResult<Json<IntakeOutcome>> {
    let cfg = &s.settings.intake;
    let g = cfg.read(&n)?;
    let now = s.now_ms();
    if g.resolved && s.store.intake_incident(&g.group_key).await?.is_none() {
        return Ok(Json(IntakeOutcome {
            incident_id: None,
            opened: false,
            proposed: vec![],
            refused: vec![],
        }));
    }
    let indicators = IndicatorsInput {
        cidrs: g.cidrs.clone(),
        user_agents: g.user_agents.clone(),
    };
    let facts: FactsChange = FactsInput {
        indicators: Some(&indicators),
        ..FactsInput::default()
    }
    .validate()?;
    let new = NewIncident::validate(
        &g.title,
        &g.summary,
        g.severity,
        None,
        now,
        now,
        &[],
        false,
        now,
    )?
    .with_record(false, None, None, &facts, now)?;
    let (rec, opened) = s.store.intake_alert(&g, &new, now).await?;

    if !opened && !g.resolved {
        // A more severe alert raises the severity; new addresses join the indicators.
        let mut cidrs: Vec<String> = rec
            .facts
            .indicators
            .cidrs
            .iter()
            .map(|c| c.to_string())
            .collect();
        let before = cidrs.len();
        for c in &g.cidrs {
            if !cidrs.contains(c) && cidrs.len() < 1000 {
                cidrs.push(c.clone());
            }
        }
        let mut uas = rec.facts.indicators.user_agents.clone();
        let uas_before = uas.len();
        for u in &g.user_agents {
            if !uas.contains(u) && uas.len() < 100 {
                uas.push(u.clone());
            }
        }
        let raise = (g.severity < rec.severity).then_some(g.severity);
        let more = IndicatorsInput {
            cidrs,
            user_agents: uas,
        };
        let grew = more.cidrs.len() > before || more.user_agents.len() > uas_before;
        if raise.is_some() || grew {
            let facts = if grew {
                FactsInput {
                    indicators: Some(&more),
                    ..FactsInput::default()
                }
                .validate()?
            } else {
                FactsChange::default()
            };
            let change = IncidentChange::validate(
                ChangeInput {
                    severity: raise,
                    ..ChangeInput::default()
                },
                facts,
                now,
            )?;
            s.store
                .update_incident("intake", rec.id, &change, now)
                .await?;
        }
    }

    let mut proposed = Vec::new();
    let mut refused = Vec::new();
    if !g.resolved {
        for p in cfg.proposals(&n) {
            let mode = if p.enforce { "enforce" } else { "simulate" };
            let reason = if p.enforce {
                format!(
                    "enforced by intake rule {:?} (alert group {})",
                    p.rule, g.title
                )
            } else {
                format!(
                    "proposed by intake rule {:?} (alert group {}) in simulate mode: a responder decides to enforce it",
                    p.rule, g.title
                )
            };
            let mut body = json!({"kind": "block", "target": {"cidr": p.cidr}, "mode": mode, "reason": reason});
            if let Some(e) = &p.expires_in {
                body["expires_in"] = json!(e);
            }
            let made = match serde_json::from_value::<ActionRequest>(body) {
                Ok(req) => match action::validate(rec.id, &req, now) {
                    Ok(new) => {
                        s.store
                            .create_action("intake", &new, s.settings.rails, now)
                            .await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(CoreError::invalid("rules", e)),
            };
            match made {
                Ok(a) => {
                    s.metrics.policy_version.set(a.created_version);
                    proposed.push(a.id);
                }
                // Already live (a re-send): nothing to propose again.
                Err(CoreError::Conflict { .. }) => {}
                Err(CoreError::Unavailable(m)) => return Err(CoreError::Unavailable(m).into()),
                Err(e) => refused.push(format!("{} {}: {e}", p.rule, p.cidr)),
            }
        }
    }
    Ok(Json(IntakeOutcome {
        incident_id: Some(rec.id),
        opened,
        proposed,
        refused,
    }))
}
