//! `/v1/settings`: the organisation settings documents and notifications use (company name,
//! DPO contact, security mailbox). Anyone signed in reads them; an admin changes them.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Admins, Auth, Readers};
use crate::clock::rfc3339;
use crate::domain::settings::{self, OrgSettings, StoredSettings};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
}

/// The settings in effect, and where each value comes from.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingsView {
    #[serde(flatten)]
    pub effective: OrgSettings,
    /// The fields set through this API (the others come from the start-up flags, if any).
    pub set_through_api: Vec<String>,
    /// When and by whom the settings were last changed through this API.
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

fn view(stored: &StoredSettings, defaults: &OrgSettings) -> SettingsView {
    let mut set = Vec::new();
    for (name, v) in [
        ("company_name", &stored.company_name),
        ("dpo_contact", &stored.dpo_contact),
        ("security_mailbox", &stored.security_mailbox),
    ] {
        if v.is_some() {
            set.push(name.to_string());
        }
    }
    SettingsView {
        effective: OrgSettings::effective(stored, defaults),
        set_through_api: set,
        updated_at: stored.updated_at.map(rfc3339),
        updated_by: stored.updated_by.clone(),
    }
}

/// A present field, `null` included (`null` clears it back to the start-up default).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// Body of `PATCH /v1/settings`: any of the fields; `null` clears one (the start-up flag's
/// value, if any, applies again).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::schema_items::Name200>, nullable)]
    pub company_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500, nullable)]
    pub dpo_contact: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 254, nullable, example = "security@example.com")]
    pub security_mailbox: Option<Option<String>>,
}

/// The organisation settings in effect.
#[utoipa::path(get, path = "/v1/settings", tag = "operations",
    responses((status = 200, body = SettingsView)), security(("bearer" = [])))]
async fn get_settings(
    State(s): State<AppState>,
    _auth: Auth<Readers>,
) -> ApiResult<Json<SettingsView>> {
    let stored = s.store.settings().await?;
    Ok(Json(view(&stored, &s.settings.org)))
}

/// Change organisation settings (admin; audited as `settings.update`).
#[utoipa::path(patch, path = "/v1/settings", tag = "operations",
    request_body(content = UpdateSettings, example = json!({"company_name": "Example Shop GmbH", "dpo_contact": "Dana Privacy, dpo@example.com", "security_mailbox": "security@example.com"})),
    responses((status = 200, body = SettingsView), (status = 422, description = "every invalid field is named (`errors`)", body = ErrorBody)),
    security(("bearer" = [])))]
async fn update_settings(
    State(s): State<AppState>,
    auth: Auth<Admins>,
    ApiJson(b): ApiJson<UpdateSettings>,
) -> ApiResult<Json<SettingsView>> {
    let change = settings::validate(
        b.company_name.as_ref().map(Option::as_deref),
        b.dpo_contact.as_ref().map(Option::as_deref),
        b.security_mailbox.as_ref().map(Option::as_deref),
    )?;
    let stored = s
        .store
        .update_settings(auth.actor(), &change, s.now_ms())
        .await?;
    Ok(Json(view(&stored, &s.settings.org)))
}
