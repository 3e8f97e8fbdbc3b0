//! `GET /v1/providers` (the catalog) and `GET /v1/integrations` (what this gateway is
//! configured with). Neither ever shows a secret: integrations list their setting names, not
//! their values, and no client secret.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tether_core::catalog::ProviderDef;
use tether_core::integration::Integration;
use tether_store::Store;

use crate::api_keys::App;
use crate::integrations::Source;
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/providers", get(providers::<S>))
        .route("/v1/integrations", get(integrations::<S>))
}

fn provider_view(provider: &ProviderDef) -> Value {
    let fields: Vec<Value> = provider
        .fields
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "label": f.label,
                "help": f.help,
                "secret": f.secret,
                "required": f.required,
                "pattern": f.pattern,
            })
        })
        .collect();
    let settings: Vec<Value> = provider
        .settings
        .iter()
        .map(|s| json!({"name": s.name, "label": s.label, "required": s.required}))
        .collect();
    json!({
        "id": provider.id,
        "display_name": provider.display_name,
        "auth_mode": provider.auth_mode,
        "description": provider.description,
        "fields": fields,
        "settings": settings,
        "operator": provider.operator_items(),
        "end_user": provider.end_user_items(),
        "quirks": provider.quirks(),
        "allowed_hosts": provider.api.allowed_hosts,
        "docs_url": provider.docs_url,
        "mark": {"text": provider.mark.text, "color": provider.mark.color},
    })
}

async fn providers<S: Store>(_app: App, State(state): State<AppState<S>>) -> Json<Value> {
    let providers: Vec<Value> = state.catalog.iter().map(|p| provider_view(p)).collect();
    Json(json!({ "providers": providers }))
}

async fn integrations<S: Store>(_app: App, State(state): State<AppState<S>>) -> Json<Value> {
    let integrations: Vec<Value> = state
        .integrations
        .all()
        .iter()
        .map(|i| integration_view(i, state.integrations.source(i.key.as_str())))
        .collect();
    Json(json!({ "integrations": integrations }))
}

/// The public view of an integration: never a secret (setting names, not values; the OAuth
/// client id, not its secret).
pub(crate) fn integration_view(i: &Integration, source: Option<Source>) -> Value {
    let mut view = json!({
        "key": i.key,
        "provider": i.provider.id,
        "display_name": i.display_name,
        "auth_mode": i.auth_mode(),
        "settings": i.settings.keys().collect::<Vec<_>>(),
        "managed_by": match source {
            Some(Source::Api) => "api",
            _ => "config",
        },
    });
    if let Some(client) = &i.oauth2 {
        view["oauth2"] = json!({
            "client_id": client.client_id,
            "authorization_url": client.authorization_url.text,
            "token_url": client.token_url.text,
            "revocation_url": client.revocation_url.as_ref().map(|u| u.text.as_str()),
            "scopes": client.scopes.iter().map(|s| s.text()).collect::<Vec<_>>(),
            "pkce": client.pkce,
        });
    }
    view
}
