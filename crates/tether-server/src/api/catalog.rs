//! `GET /v1/providers` (the catalog) and `GET /v1/integrations` (what this gateway is
//! configured with). Neither ever shows a secret: integrations list their setting names, not
//! their values, and no client secret.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tether_core::catalog::ProviderDef;
use tether_core::catalog::describe::Item;
use tether_core::integration::Integration;
use tether_store::Store;
use utoipa::ToSchema;

use crate::http::auth::App;
use crate::http::error::Problem;
use crate::state::AppState;
use crate::state::integrations::Source;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/providers", get(providers::<S>))
        .route("/v1/integrations", get(integrations::<S>))
}

/// A value the operator configures or the end user enters, as a provider file declares it.
#[derive(Serialize, ToSchema)]
pub struct ItemView {
    pub name: String,
    pub label: String,
    pub required: bool,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl From<Item> for ItemView {
    fn from(item: Item) -> Self {
        ItemView {
            name: item.name,
            label: item.label,
            required: item.required,
            secret: item.secret,
            default: item.default,
            pattern: item.pattern,
        }
    }
}

/// A field of the Connect page's credential form.
#[derive(Serialize, ToSchema)]
pub struct FieldView {
    pub name: String,
    pub label: String,
    pub help: String,
    pub secret: bool,
    pub required: bool,
    pub pattern: Option<String>,
}

/// A setting of the operator's `[integrations.KEY]` table.
#[derive(Serialize, ToSchema)]
pub struct SettingView {
    pub name: String,
    pub label: String,
    pub required: bool,
}

/// A provider's mark on the Connect page.
#[derive(Serialize, ToSchema)]
pub struct MarkView {
    pub text: String,
    pub color: String,
}

/// One provider of the catalog.
#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    /// The product name in lowercase kebab case (`salesforce`, `zoho-crm`, ...).
    pub id: String,
    pub display_name: String,
    /// `oauth2`, `oauth2_client_credentials`, `api_key`, `two_step` or `basic`.
    pub auth_mode: String,
    pub description: String,
    /// The credential form's fields (non-OAuth modes).
    pub fields: Vec<FieldView>,
    /// What the operator may or must configure.
    pub settings: Vec<SettingView>,
    /// Everything the operator configures, OAuth client included.
    pub operator: Vec<ItemView>,
    /// Everything the end user enters.
    pub end_user: Vec<ItemView>,
    /// The provider's quirks Tether handles, in words.
    pub quirks: Vec<String>,
    /// Hosts an API base URL from a token response or a typed value may point at.
    pub allowed_hosts: Vec<String>,
    /// The public documentation the provider file's facts come from.
    pub docs_url: Option<String>,
    pub mark: MarkView,
}

/// The catalog.
#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

fn provider_view(provider: &ProviderDef) -> ProviderView {
    ProviderView {
        id: provider.id.clone(),
        display_name: provider.display_name.clone(),
        auth_mode: provider.auth_mode.as_str().to_owned(),
        description: provider.description.clone(),
        fields: provider
            .fields
            .iter()
            .map(|f| FieldView {
                name: f.name.clone(),
                label: f.label.clone(),
                help: f.help.clone(),
                secret: f.secret,
                required: f.required,
                pattern: f.pattern.clone(),
            })
            .collect(),
        settings: provider
            .settings
            .iter()
            .map(|s| SettingView {
                name: s.name.clone(),
                label: s.label.clone(),
                required: s.required,
            })
            .collect(),
        operator: provider
            .operator_items()
            .into_iter()
            .map(Into::into)
            .collect(),
        end_user: provider
            .end_user_items()
            .into_iter()
            .map(Into::into)
            .collect(),
        quirks: provider.quirks(),
        allowed_hosts: provider.api.allowed_hosts.clone(),
        docs_url: provider.docs_url.clone(),
        mark: MarkView {
            text: provider.mark.text.clone(),
            color: provider.mark.color.clone(),
        },
    }
}

/// The catalog: every provider this build knows, what each asks of whom.
#[utoipa::path(get, path = "/v1/providers", tag = "catalog",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The catalog", body = ProviderList),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn providers<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
) -> Json<ProviderList> {
    Json(ProviderList {
        providers: state.catalog.iter().map(|p| provider_view(p)).collect(),
    })
}

/// The OAuth client of an integration, without its secret.
#[derive(Serialize, ToSchema)]
pub struct OAuth2View {
    pub client_id: String,
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub scopes: Vec<String>,
    pub pkce: bool,
}

/// An integration: the app's use of one provider. Never a secret.
#[derive(Serialize, ToSchema)]
pub struct IntegrationView {
    /// The app's name for it (`[integrations.KEY]`).
    pub key: String,
    /// The catalog id of its provider.
    pub provider: String,
    pub display_name: String,
    pub auth_mode: String,
    /// The names of the settings it has (their values are never shown).
    pub settings: Vec<String>,
    /// `config` (tether.toml, read-only here) or `api` (created through the API).
    pub managed_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2View>,
}

/// The configured integrations.
#[derive(Serialize, ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationView>,
}

/// Every integration this gateway serves, from tether.toml and from the API.
#[utoipa::path(get, path = "/v1/integrations", tag = "integrations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The integrations", body = IntegrationList),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn integrations<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
) -> Json<IntegrationList> {
    Json(IntegrationList {
        integrations: state
            .integrations
            .all()
            .iter()
            .map(|i| integration_view(i, state.integrations.source(i.key.as_str())))
            .collect(),
    })
}

/// The public view of an integration: never a secret (setting names, not values; the OAuth
/// client id, not its secret).
pub(crate) fn integration_view(i: &Integration, source: Option<Source>) -> IntegrationView {
    IntegrationView {
        key: i.key.to_string(),
        provider: i.provider.id.clone(),
        display_name: i.display_name.clone(),
        auth_mode: i.auth_mode().as_str().to_owned(),
        settings: i.settings.keys().cloned().collect(),
        managed_by: match source {
            Some(Source::Api) => "api",
            _ => "config",
        }
        .to_owned(),
        oauth2: i.oauth2.as_ref().map(|client| OAuth2View {
            client_id: client.client_id.clone(),
            authorization_url: client.authorization_url.text().to_owned(),
            token_url: client.token_url.text().to_owned(),
            revocation_url: client.revocation_url.as_ref().map(|u| u.text().to_owned()),
            scopes: client.scopes.iter().map(|s| s.text().to_owned()).collect(),
            pkce: client.pkce,
        }),
    }
}
