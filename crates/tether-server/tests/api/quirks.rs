//! Each quirk class of real CRMs, end to end through the real catalog file with its endpoints
//! overridden to the seed emulator in the matching profile: connect, proxy to the right host,
//! a 401 from the API, refresh, proxy again.

use std::sync::Arc;

use serde_json::{Value, json};
use tether_core::catalog::{Catalog, OAuth2Def};
use tether_emulators::seed_oauth::{ClientAuthMethod, SeedOAuthConfig};
use url::Url;

use crate::helpers::*;

/// Where a proxied `GET v1/echo` landed: (Host header, path).
pub(crate) async fn echo(app: &TestApp, id: &str) -> (String, String) {
    let response = app.proxy_get(id, "v1/echo").await;
    assert_eq!(response.status(), 200, "proxied echo of {id}");
    let body: Value = response.json().await.unwrap();
    (
        body["headers"]["host"].as_str().unwrap().to_owned(),
        body["path"].as_str().unwrap().to_owned(),
    )
}

/// Proxies, makes the API answer 401 (every access token expired), proxies again: the second
/// call must have refreshed once (with `grant`) and reached the same place.
pub(crate) async fn survives_expiry(
    app: &TestApp,
    id: &str,
    grant: &str,
    expected: &(String, String),
) {
    assert_eq!(&echo(app, id).await, expected);
    let before = app.seed.control.token_calls_by_grant(grant);
    app.seed.control.expire_access_tokens();
    assert_eq!(&echo(app, id).await, expected);
    assert_eq!(
        app.seed.control.token_calls_by_grant(grant),
        before + 1,
        "one {grant} call after the 401"
    );
}

/// `http://localhost:PORT/x/instance-1/`: the instance URL the emulator's token responses name.
pub(crate) fn instance_url(emulator: &Url) -> Url {
    let mut url = emulator.clone();
    url.set_host(Some("localhost")).unwrap();
    url.set_path("/x/instance-1/");
    url
}

pub(crate) fn host_of(url: &Url) -> String {
    let mut host = url.host_str().unwrap().to_owned();
    host.push(':');
    host.push_str(&url.port().unwrap().to_string());
    host
}

/// `{emulator}{rest}` as text: `rest` may hold `${...}` expressions, which a URL would encode.
pub(crate) fn at(emulator: &Url, rest: &str) -> String {
    [emulator.as_str(), rest].concat()
}

#[tokio::test]
async fn salesforce_proxies_to_its_instance_and_keeps_its_refresh_token() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::salesforce_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "salesforce".into(),
                json!({
                    "provider": "salesforce",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("sf-user", "salesforce", None).await;
    let instance = instance_url(app.seed.base_url());
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["instance_url"], instance.as_str());
    // No expires_in: the catalog's declared lifetime (`[lifetime] access_token_secs`, the
    // default session timeout of two hours) stands in, so the token is refreshed before.
    let expires_at = connection["expires_at"]
        .as_str()
        .expect("the declared lifetime");
    let expires_at =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
    let ahead = expires_at - tether_core::unix_time::now();
    assert!((7100..=7200).contains(&ahead), "{ahead}");
    let credentials = app.credentials_json(&id, false).await;
    assert_eq!(credentials["base_url"], instance.as_str());

    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    // The refresh answered no refresh token; the one kept from the connect works again.
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 2);
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

/// The path of an endpoint of a provider file, so a test pointed at the emulator still uses
/// the provider's own path (`oauth/2026-03/token`), which the emulator's profile serves alone.
fn catalog_path(provider: &str, pick: fn(&OAuth2Def) -> Option<&String>) -> String {
    let catalog = Catalog::embedded().unwrap();
    let def = catalog.get(provider).unwrap().oauth2.clone().unwrap();
    let url = Url::parse(pick(&def).unwrap()).unwrap();
    url.path().trim_start_matches('/').to_owned()
}

/// Pipedrive documents only client_id, redirect_uri and state for its authorization URL; the
/// emulator's Pipedrive profile refuses anything else, so a connect that sends PKCE fails.
#[tokio::test]
async fn pipedrive_sends_no_pkce_and_calls_the_api_domain_of_its_token_response() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::pipedrive_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "pipedrive".into(),
                json!({
                    "provider": "pipedrive",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                    "revocation_url": at(emu, "oauth/revoke"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("pd-user", "pipedrive", None).await;
    let sent = app.seed.control.last_authorize_params();
    assert!(
        sent.iter()
            .all(|(name, _)| !name.starts_with("code_challenge")),
        "{sent:?}"
    );
    let instance = instance_url(app.seed.base_url());
    assert_eq!(
        app.get_connection(&id).await["metadata"]["api_domain"],
        instance.as_str()
    );
    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

#[tokio::test]
async fn zoho_joins_scopes_with_commas_and_follows_api_domain() {
    let scopes = [
        "ZohoCRM.modules.ALL",
        "ZohoCRM.settings.ALL",
        "ZohoCRM.users.READ",
    ];
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::zoho_like(&scopes),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "zoho".into(),
                json!({
                    "provider": "zoho-crm",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    // The data centre comes back with the redirect; the emulator refuses a space-joined list.
    let id = app.connect_through("zoho-user", "zoho", None).await;
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["data_center"], "zoho.eu");
    assert_eq!(connection["metadata"]["scope"], scopes.join(","));
    let instance = instance_url(app.seed.base_url());
    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

/// A Zoho user in the Canadian data centre comes back with
/// `accounts-server=https://accounts.zohocloud.ca` (not on `zoho.*`): the connection is made
/// and keeps that data centre for its token and revocation URLs.
#[tokio::test]
async fn zoho_accepts_the_canadian_data_centre() {
    let scopes = [
        "ZohoCRM.modules.ALL",
        "ZohoCRM.settings.ALL",
        "ZohoCRM.users.READ",
    ];
    let mut seed = SeedOAuthConfig::zoho_like(&scopes);
    seed.callback_params = vec![
        (
            "accounts-server".into(),
            "https://accounts.zohocloud.ca".into(),
        ),
        ("location".into(), "ca".into()),
    ];
    let app = spawn_app_with(AppOptions {
        seed,
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "zoho".into(),
                json!({
                    "provider": "zoho-crm",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("zoho-ca", "zoho", None).await;
    assert_eq!(
        app.get_connection(&id).await["metadata"]["data_center"],
        "zohocloud.ca"
    );
}

#[tokio::test]
async fn kommo_takes_the_account_from_the_redirect_json_bodies_and_redirect_uri_on_refresh() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::per_account("acme"),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "kommo".into(),
                json!({
                    "provider": "kommo",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    // The account stands in the path here, as it does in the host at Kommo; the
                    // emulator names it in the redirect back as `referer=acme.kommo.com`.
                    "authorization_url": at(emu, "x/acme/oauth/authorize"),
                    "token_url": at(emu, "x/${connection.subdomain}/oauth/token"),
                    "api_base_url": at(emu, "x/${connection.subdomain}"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    // Nothing is asked first: the user picks the account at Kommo.
    let id = app.connect_through("kommo-user", "kommo", None).await;
    assert_eq!(
        app.get_connection(&id).await["metadata"]["subdomain"],
        "acme"
    );
    let expected = (host_of(app.seed.base_url()), "/x/acme/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    let last = app.seed.control.last_token_request().unwrap();
    assert!(
        last.content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{last:?}"
    );
    assert!(
        last.body_fields.iter().any(|f| f == "redirect_uri"),
        "{last:?}"
    );
    // Refresh tokens rotate: the rotated one was stored, so a second refresh works too.
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    assert_eq!(app.seed.control.reuse_events(), 0);
}

#[tokio::test]
async fn a_typed_portal_that_could_move_the_host_is_refused_on_the_form() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::bitrix24_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "bitrix".into(),
                json!({
                    "provider": "bitrix24",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let browser = Browser::new();
    let session = app.create_session("b24-evil", Some(RETURN_URL)).await;
    let start = app.connect_start_url(&session, "bitrix");
    for evil in [
        "evil.example/x.bitrix24.com",
        "acme.bitrix24.com.evil.example",
        "a@evil.bitrix24.com",
        "acme.bitrix24.com/../x",
    ] {
        let response = browser
            .client
            .post(start.clone())
            .form(&[("portal", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{evil} accepted");
    }
    assert_eq!(app.seed.control.token_calls(), 0);
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn a_redirect_naming_a_foreign_account_host_is_refused_before_any_token_call() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            callback_params: vec![("referer".into(), "acme.kommo.com.evil.example".into())],
            ..SeedOAuthConfig::per_account("acme")
        },
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "kommo".into(),
                json!({
                    "provider": "kommo",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "x/acme/oauth/authorize"),
                    "token_url": at(emu, "x/${connection.subdomain}/oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let browser = Browser::new();
    let session = app.create_session("kommo-evil", Some(RETURN_URL)).await;
    let response = browser.get(app.connect_start_url(&session, "kommo")).await;
    assert_eq!(response.status(), 400);
    let page = response.text().await.unwrap();
    assert!(page.contains("could not be completed"), "{page}");
    assert_eq!(app.seed.control.token_calls(), 0);
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn dynamics_puts_the_tenant_in_the_url_and_the_organisation_in_the_scope() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::tenant(
            "contoso-tenant",
            "https://contoso.crm.dynamics.com/user_impersonation",
        ),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "dynamics".into(),
                json!({
                    "provider": "dynamics-365",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "tenant": "contoso-tenant",
                    "authorization_url": at(emu, "x/${settings.tenant}/oauth/authorize"),
                    "token_url": at(emu, "x/${settings.tenant}/oauth/token"),
                    "api_base_url": at(emu, "x/${settings.tenant}"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let form: &[(&str, &str)] = &[("org_host", "https://Contoso.crm.dynamics.com/")];
    let id = app
        .connect_through("dyn-user", "dynamics", Some(form))
        .await;
    assert_eq!(
        app.get_connection(&id).await["metadata"]["org_host"],
        "contoso.crm.dynamics.com"
    );
    let expected = (
        host_of(app.seed.base_url()),
        "/x/contoso-tenant/v1/echo".to_owned(),
    );
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

#[tokio::test]
async fn client_credentials_connect_without_a_browser_trip_and_ask_again_on_401() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            required_segment: Some("contoso-tenant".into()),
            ..SeedOAuthConfig::client_credentials("https://contoso.crm.dynamics.com/.default")
        },
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "dynamics-app".into(),
                json!({
                    "provider": "dynamics-365-s2s",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "tenant": "contoso-tenant",
                    "org_host": "contoso.crm.dynamics.com",
                    "token_url": at(emu, "x/${settings.tenant}/oauth/token"),
                    "api_base_url": at(emu, "x/contoso-tenant"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("s2s", "dynamics-app", None).await;
    assert_eq!(
        app.seed.control.token_calls_by_grant("client_credentials"),
        1
    );
    let expected = (
        host_of(app.seed.base_url()),
        "/x/contoso-tenant/v1/echo".to_owned(),
    );
    survives_expiry(&app, &id, "client_credentials", &expected).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
}

fn salesforce_app_options() -> AppOptions {
    AppOptions {
        seed: SeedOAuthConfig::salesforce_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "salesforce".into(),
                json!({
                    "provider": "salesforce",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    }
}

#[tokio::test]
async fn an_instance_url_outside_the_allowed_hosts_is_never_used() {
    let app = spawn_app_with(salesforce_app_options()).await;
    // At connect time: the token response names a host the provider file does not allow.
    app.seed
        .control
        .set_instance_url(Some("https://acme.my.salesforce.com.evil.example"));
    let browser = Browser::new();
    let session = app.create_session("sf-evil", Some(RETURN_URL)).await;
    let response = browser
        .get(app.connect_start_url(&session, "salesforce"))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(app.connection_count().await, 0, "nothing stored");

    // At refresh time: a connection made with a good instance must not move.
    app.seed.control.set_instance_url(None);
    let id = app.connect_through("sf-user", "salesforce", None).await;
    let instance = instance_url(app.seed.base_url());
    app.seed
        .control
        .set_instance_url(Some("https://evil.example"));
    app.seed.control.expire_access_tokens();
    // The refresh answer is refused as a whole: the old token stays in place, so the app sees
    // the provider's own 401, and the connection records why.
    let response = app.proxy_get(&id, "v1/echo").await;
    assert_eq!(response.status(), 401);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["instance_url"], instance.as_str());
    assert_eq!(connection["last_error"], "invalid_response");

    // And the app cannot import one either.
    let imported = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&json!({
            "integration": "salesforce",
            "end_user": {"id": "imported"},
            "credentials": {"access_token": "at", "refresh_token": "rt"},
            "metadata": {"instance_url": "https://evil.example"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 400);
    let body: Value = imported.json().await.unwrap();
    assert_eq!(body["code"], "invalid_metadata");
}

#[tokio::test]
async fn a_refresh_that_moves_the_instance_updates_the_connection() {
    let app = spawn_app_with(salesforce_app_options()).await;
    let id = app.connect_through("sf-move", "salesforce", None).await;
    // Same emulator under its other name: an allowed (loopback) host, another instance.
    let mut moved = app.seed.base_url().clone();
    moved.set_path("/x/instance-2/");
    app.seed.control.set_instance_url(Some(moved.as_str()));
    let expected = (host_of(&moved), "/x/instance-2/v1/echo".to_owned());
    app.seed.control.expire_access_tokens();
    assert_eq!(echo(&app, &id).await, expected);
    assert_eq!(
        app.get_connection(&id).await["metadata"]["instance_url"],
        moved.as_str()
    );
}

#[tokio::test]
async fn sugarcrm_signs_in_with_the_password_grant_and_never_keeps_the_password() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::password_grant("sally", "s3cret-pass", "tether"),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "sugar".into(),
                json!({
                    "provider": "sugarcrm",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "token_url": at(emu, "oauth/token"),
                    "api_base_url": emu.as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    // A wrong password is refused and stores nothing.
    let browser = Browser::new();
    let session = app.create_session("sugar-user", Some(RETURN_URL)).await;
    let start = app.connect_start_url(&session, "sugar");
    assert_eq!(browser.get(start.clone()).await.status(), 200);
    let wrong = browser
        .client
        .post(start)
        .form(&[
            ("instance", "acme.sugarondemand.com"),
            ("username", "sally"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    assert_eq!(app.connection_count().await, 0);

    let form: &[(&str, &str)] = &[
        ("instance", "https://ACME.sugarondemand.com/"),
        ("username", "sally"),
        ("password", "s3cret-pass"),
    ];
    let id = app
        .connect_through("sugar-user-2", "sugar", Some(form))
        .await;
    assert_eq!(app.seed.control.token_calls_by_grant("password"), 2);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["instance"], "acme.sugarondemand.com");
    assert!(
        !connection.to_string().contains("s3cret-pass"),
        "the password is never kept: {connection}"
    );
    let credentials = app.credentials_json(&id, false).await;
    assert!(credentials["headers"]["OAuth-Token"].is_string());
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    // The refresh carries the platform and a JSON body, or the emulator refuses it.
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

/// Every provider in the catalog can be configured and started from the Connect page: a
/// redirect to the provider (built from the file's templates and defaults), its form, or a
/// provider answer; never 501 or 500.
#[tokio::test]
async fn every_catalog_provider_starts_connecting() {
    let catalog = tether_core::catalog::Catalog::embedded().unwrap();
    let tables: Vec<(String, Value)> = catalog
        .iter()
        .map(|p| {
            let mut table = json!({"provider": p.id, "client_id": "seed-client", "client_secret": "seed-secret"});
            for setting in &p.settings {
                if setting.default.is_none() {
                    let sample = match setting.name.as_str() {
                        "org_host" => "contoso.crm.dynamics.com".to_owned(),
                        "my_domain" => "contoso.my.salesforce.com".to_owned(),
                        "username" => "sync@contoso.example".to_owned(),
                        "private_key" => crate::new_providers::rsa_pem(),
                        _ => "contoso".to_owned(),
                    };
                    table[&setting.name] = json!(sample);
                }
            }
            // The generic provider has no endpoints of its own; client credentials would
            // call the real token endpoint, so they call the emulator instead.
            let oauth = p.oauth2.clone().unwrap_or_default();
            if p.api.base_url.is_none() {
                table["api_base_url"] = json!("https://crm.example.com");
            }
            if oauth.authorization_url.is_none() && p.id == "oauth2" {
                table["authorization_url"] = json!("https://crm.example.com/oauth/authorize");
            }
            if oauth.token_url.is_none() {
                table["token_url"] = json!("https://crm.example.com/oauth/token");
            }
            if p.auth_mode == tether_core::catalog::AuthMode::Oauth2ClientCredentials {
                table["token_url"] = json!("http://127.0.0.1:1/oauth/token");
            }
            (["p-", &p.id].concat(), table)
        })
        .collect();
    let count = tables.len();
    assert!(count >= 44, "{count} providers");
    let app = spawn_app_with(AppOptions {
        integrations: tables,
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("every", Some(RETURN_URL)).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    for provider in catalog.iter() {
        let key = ["p-", &provider.id].concat();
        let response = client
            .get(app.connect_start_url(&session, &key))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let shown = response.headers().get("location").cloned();
        match status {
            303 => {
                let location = Url::parse(shown.unwrap().to_str().unwrap()).unwrap();
                assert_eq!(location.scheme(), "https", "{key}: {location}");
                assert!(
                    location.query_pairs().any(|(k, _)| k == "state"),
                    "{key}: {location}"
                );
            }
            200 => {
                let page = response.text().await.unwrap();
                assert!(page.contains("<form"), "{key}: {page}");
            }
            // Client credentials against nothing listening: the provider is unavailable.
            502 => assert_eq!(
                provider.auth_mode,
                tether_core::catalog::AuthMode::Oauth2ClientCredentials,
                "{key}"
            ),
            other => panic!("{key}: {other}"),
        }
    }
}

#[tokio::test]
async fn bitrix24_asks_the_portal_follows_client_endpoint_and_sends_auth_as_a_parameter() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::bitrix24_like(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "bitrix".into(),
                json!({
                    "provider": "bitrix24",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let form: &[(&str, &str)] = &[("portal", "https://Acme.bitrix24.com/")];
    let id = app.connect_through("b24-user", "bitrix", Some(form)).await;
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["portal"], "acme.bitrix24.com");
    let instance = instance_url(app.seed.base_url());
    assert_eq!(connection["metadata"]["client_endpoint"], instance.as_str());
    // No Authorization header: the token travels as `auth`, after the app's own query.
    let response = app.proxy_get(&id, "v1/echo?start=50").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["headers"]["authorization"].is_null(), "{body}");
    let query = body["query"].as_str().unwrap();
    assert!(query.starts_with("start=50&auth="), "{query}");
    let credentials = app.credentials_json(&id, false).await;
    assert!(credentials["query"]["auth"].is_string());
    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

#[tokio::test]
async fn the_connect_page_shows_each_provider_with_its_mark() {
    let app = spawn_app_with(AppOptions {
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            let oauth = |provider: &str| {
                json!({
                    "provider": provider,
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "token_url": at(emu, "oauth/token"),
                })
            };
            vec![
                ("salesforce".into(), oauth("salesforce")),
                ("bitrix".into(), oauth("bitrix24")),
            ]
        })),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("marks", Some(RETURN_URL)).await;
    let page = Browser::new()
        .get(Url::parse(session["connect_url"].as_str().unwrap()).unwrap())
        .await
        .text()
        .await
        .unwrap();
    // Letters in a coloured square, from each provider file; an OAuth provider that asks
    // something first says so.
    assert!(page.contains(">SF</span>"), "{page}");
    assert!(page.contains("#00a1e0"), "{page}");
    assert!(page.contains(">B24</span>"), "{page}");
    assert!(page.contains("Sign in on Salesforce"), "{page}");
    assert!(page.contains("Enter your Bitrix24 details"), "{page}");
}

#[tokio::test]
async fn a_token_that_never_expires_works_until_revoked_then_asks_for_reauth() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::never_expiring(),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "monday".into(),
                json!({
                    "provider": "monday",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                    "api_base_url": emu.as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("monday-user", "monday", None).await;
    let connection = app.get_connection(&id).await;
    assert!(connection["expires_at"].is_null(), "{connection}");
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    assert_eq!(echo(&app, &id).await, expected);
    // Never refreshed ahead of time: there is nothing to refresh with, and no expiry.
    let credentials = app.credentials_json(&id, false).await;
    assert!(credentials["expires_at"].is_null());
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
    // The user revokes the app at the provider: the next call cannot be saved by a refresh.
    app.seed.control.revoke_all();
    let response = app.proxy_get(&id, "v1/echo").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "needs_reauth");
    assert_eq!(app.get_connection(&id).await["status"], "needs_reauth");
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
}

/// monday.com's OAuth 2.1: PKCE S256 and `force_install_if_needed` on the authorization
/// request, the code redeemed at the file's `/oauth_ms/oauth/token` (the emulator serves
/// nothing at the legacy path), an expiring token refreshed there, and rotated refresh tokens
/// kept.
#[tokio::test]
async fn monday_connects_with_pkce_through_oauth_2_1_and_refreshes() {
    let token_path = catalog_path("monday", |d| d.token_url.as_ref());
    assert_eq!(token_path, "oauth_ms/oauth/token");
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::monday_oauth21(),
        emulator_integrations: Some(Arc::new(move |emu: &Url| {
            vec![(
                "monday".into(),
                json!({
                    "provider": "monday",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, &token_path),
                    "api_base_url": emu.as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("monday-21", "monday", None).await;
    let sent: std::collections::HashMap<_, _> = app
        .seed
        .control
        .last_authorize_params()
        .into_iter()
        .collect();
    assert_eq!(sent["code_challenge_method"], "S256");
    assert!(sent.contains_key("code_challenge"));
    assert_eq!(sent["force_install_if_needed"], "true");
    let connection = app.get_connection(&id).await;
    assert!(connection["expires_at"].is_string(), "{connection}");
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    // The refresh token rotated; the new one was kept, so a second refresh works too.
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    assert_eq!(app.seed.control.reuse_events(), 0);
}

/// HubSpot's date-versioned OAuth API: tokens and refreshes at `/oauth/2026-03/token` with the
/// client in the body (the emulator serves nothing at `/oauth/v1/token`), and the refresh
/// token revoked at `/oauth/2026-03/token/revoke` when the connection is deleted.
#[tokio::test]
async fn hubspot_refreshes_and_revokes_through_the_2026_03_endpoints() {
    let token_path = catalog_path("hubspot", |d| d.token_url.as_ref());
    let revoke_path = catalog_path("hubspot", |d| d.revocation_url.as_ref());
    assert_eq!(token_path, "oauth/2026-03/token");
    assert_eq!(revoke_path, "oauth/2026-03/token/revoke");
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::hubspot_2026_03(),
        emulator_integrations: Some(Arc::new(move |emu: &Url| {
            vec![(
                "hubspot".into(),
                json!({
                    "provider": "hubspot",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, &token_path),
                    "revocation_url": at(emu, &revoke_path),
                    "api_base_url": emu.as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("hs-user", "hubspot", None).await;
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    let last = app.seed.control.last_token_request().unwrap();
    assert_eq!(last.client_auth, ClientAuthMethod::Body, "{last:?}");
    let response = app
        .api(reqwest::Method::DELETE, &["v1/connections/", &id].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.seed.control.revoke_calls(), 1);
}
