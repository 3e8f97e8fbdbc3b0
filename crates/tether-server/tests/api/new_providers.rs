//! The providers of issue 18's second half, each through its real catalog file against an
//! emulator profile: HighLevel (sub-account and agency tokens), Salesforce's server-to-server
//! variants (client credentials, and the JWT bearer grant with the assertion verified for
//! real), and the API-key CRMs (Affinity, Apollo, Copper by API key, Odoo, Follow Up Boss):
//! connect, proxy with the provider's headers, and refusals that store nothing.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tether_emulators::Running;
use tether_emulators::key_api::{self, KeyApiConfig, KeyApiControl};
use tether_emulators::seed_oauth::{JwtBearerProfile, SeedOAuthConfig};
use url::Url;

use crate::helpers::*;
use crate::quirks::{at, echo, host_of, instance_url, survives_expiry};

/// RFC 7523's grant type, as the emulator counts it.
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[tokio::test]
async fn highlevel_sub_account_tokens_name_the_location_and_send_user_type_on_every_call() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::highlevel_like("Location"),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "ghl".into(),
                json!({
                    "provider": "highlevel",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                    "api_base_url": emu.as_str(),
                    "scopes": ["contacts.readonly"],
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    // The emulator refuses any token request without `user_type=Location`.
    let id = app.connect_through("ghl-user", "ghl", None).await;
    let metadata = app.get_connection(&id).await["metadata"].clone();
    assert_eq!(metadata["location_id"], "loc-1", "{metadata}");
    assert_eq!(metadata["company_id"], "comp-1");
    assert_eq!(metadata["user_type"], "Location");
    let last = app.seed.control.last_token_request().unwrap();
    assert_eq!(
        last.client_auth,
        tether_emulators::seed_oauth::ClientAuthMethod::Body
    );
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    // Refreshes carry user_type too, and the rotated refresh token is kept.
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    survives_expiry(&app, &id, "refresh_token", &expected).await;
    assert_eq!(app.seed.control.reuse_events(), 0);
}

#[tokio::test]
async fn highlevel_agency_tokens_ask_for_company_and_keep_the_company() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::highlevel_like("Company"),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "ghl-agency".into(),
                json!({
                    "provider": "highlevel",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "user_type": "Company",
                    "authorization_url": at(emu, "oauth/authorize"),
                    "token_url": at(emu, "oauth/token"),
                    "api_base_url": emu.as_str(),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("agency", "ghl-agency", None).await;
    let metadata = app.get_connection(&id).await["metadata"].clone();
    assert_eq!(metadata["user_type"], "Company", "{metadata}");
    assert_eq!(metadata["company_id"], "comp-1");
    assert!(metadata.get("location_id").is_none(), "{metadata}");
    let expected = (host_of(app.seed.base_url()), "/v1/echo".to_owned());
    survives_expiry(&app, &id, "refresh_token", &expected).await;
}

#[tokio::test]
async fn salesforce_client_credentials_connect_without_a_browser_and_follow_the_instance() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::salesforce_server(None),
        emulator_integrations: Some(Arc::new(|emu: &Url| {
            vec![(
                "sf-app".into(),
                json!({
                    "provider": "salesforce-client-credentials",
                    "client_id": "seed-client",
                    "client_secret": "seed-secret",
                    "my_domain": "acme.my.salesforce.com",
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect_through("sync", "sf-app", None).await;
    let instance = instance_url(app.seed.base_url());
    assert_eq!(
        app.get_connection(&id).await["metadata"]["instance_url"],
        instance.as_str()
    );
    assert_eq!(
        app.seed.control.token_calls_by_grant("client_credentials"),
        1
    );
    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    survives_expiry(&app, &id, "client_credentials", &expected).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
}

#[test]
fn salesforce_client_credentials_need_the_org_my_domain() {
    let catalog = tether_core::catalog::Catalog::embedded().unwrap();
    for (domain, ok) in [
        ("acme.my.salesforce.com", true),
        ("acme--uat.sandbox.my.salesforce.com", true),
        ("login.salesforce.com", false),
        ("acme.my.salesforce.com.evil.example", false),
    ] {
        let table = json!({
            "provider": "salesforce-client-credentials",
            "client_id": "c", "client_secret": "s", "my_domain": domain,
        });
        let result = tether_core::integration::Integration::from_config(
            "sf",
            table.as_object().unwrap(),
            &catalog,
        );
        assert_eq!(result.is_ok(), ok, "{domain}");
    }
}

/// A 2048-bit RSA key as PKCS#8 PEM, made now (never a key kept in the repository).
pub(crate) fn rsa_pem() -> String {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

fn public_der(pem: &str) -> Vec<u8> {
    tether_core::oauth2::jwt_bearer::SigningKey::from_pem(pem)
        .unwrap()
        .public_key_der()
        .to_vec()
}

const SF_USER: &str = "integration@acme.example";

/// A gateway whose `sf-jwt` integration signs with `signing_pem` as `username`, against an
/// emulator that trusts `trusted_pem`, expects [`SF_USER`] and admits assertions valid for
/// at most `max_lifetime_secs`.
async fn jwt_app(
    signing_pem: String,
    trusted_pem: &str,
    username: &'static str,
    max_lifetime_secs: i64,
) -> TestApp {
    let profile = JwtBearerProfile {
        public_key: public_der(trusted_pem),
        issuer: "seed-client".into(),
        subject: SF_USER.into(),
        audience: "https://login.salesforce.com".into(),
        max_lifetime_secs,
    };
    spawn_app_with(AppOptions {
        seed: SeedOAuthConfig::salesforce_server(Some(profile)),
        emulator_integrations: Some(Arc::new(move |emu: &Url| {
            vec![(
                "sf-jwt".into(),
                json!({
                    "provider": "salesforce-jwt-bearer",
                    "client_id": "seed-client",
                    "username": username,
                    "private_key": signing_pem.clone(),
                    "token_url": at(emu, "oauth/token"),
                }),
            )]
        })),
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn salesforce_jwt_bearer_signs_an_assertion_the_provider_verifies() {
    let pem = rsa_pem();
    let app = jwt_app(pem.clone(), &pem, SF_USER, 180).await;
    let id = app.connect_through("sync", "sf-jwt", None).await;
    assert_eq!(app.seed.control.token_calls_by_grant(JWT_GRANT), 1);
    // Only the grant and the assertion: no client secret travels (RFC 7523 3.1).
    let last = app.seed.control.last_token_request().unwrap();
    assert_eq!(last.body_fields, ["assertion", "grant_type"]);
    assert_eq!(
        last.client_auth,
        tether_emulators::seed_oauth::ClientAuthMethod::None
    );
    let instance = instance_url(app.seed.base_url());
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["metadata"]["instance_url"], instance.as_str());
    assert!(!connection.to_string().contains("PRIVATE KEY"));
    let expected = (host_of(&instance), "/x/instance-1/v1/echo".to_owned());
    // A 401 signs a fresh assertion; there is no refresh token to use.
    survives_expiry(&app, &id, JWT_GRANT, &expected).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
    assert_eq!(echo(&app, &id).await, expected);
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_for_another_user_or_too_long_is_refused() {
    let trusted = rsa_pem();
    let cases = [
        (rsa_pem(), SF_USER, 180),
        (trusted.clone(), "other@acme.example", 180),
        // The provider admits one minute; the catalog signs for three.
        (trusted.clone(), SF_USER, 60),
    ];
    for (signing, username, max_lifetime) in cases {
        let app = jwt_app(signing, &trusted, username, max_lifetime).await;
        let browser = Browser::new();
        let session = app.create_session("sync", Some(RETURN_URL)).await;
        let response = browser.get(app.connect_start_url(&session, "sf-jwt")).await;
        assert!(
            response.status().is_client_error() || response.status().is_server_error(),
            "{}",
            response.status()
        );
        assert_eq!(app.seed.control.token_calls_by_grant(JWT_GRANT), 1);
        assert_eq!(app.connection_count().await, 0, "nothing stored");
    }
}

/// A gateway with one API-key integration pointed at a key API emulator.
async fn key_app(
    key: &str,
    table: Value,
    config: KeyApiConfig,
) -> (TestApp, Running<KeyApiControl>) {
    let emulator = key_api::spawn(config).await.unwrap();
    let mut table = table;
    table["api_base_url"] = json!(emulator.base_url().as_str());
    let app = spawn_app_with(AppOptions {
        integrations: vec![(key.to_owned(), table)],
        ..AppOptions::default()
    })
    .await;
    (app, emulator)
}

/// Posts the Connect form and returns the status; the page when it is refused.
async fn post_form(app: &TestApp, integration: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let browser = Browser::new();
    let session = app.create_session("key-user", Some(RETURN_URL)).await;
    let start = app.connect_start_url(&session, integration);
    assert_eq!(browser.get(start.clone()).await.status(), 200);
    let response = browser
        .client
        .post(start)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Proxies `GET v1/echo` and returns the headers the emulator saw.
async fn proxied_headers(app: &TestApp, id: &str) -> Value {
    let response = app.proxy_get(id, "v1/echo").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/v1/echo");
    body["headers"].clone()
}

#[tokio::test]
async fn affinity_checks_the_key_with_whoami_and_sends_it_as_a_bearer_token() {
    let config = KeyApiConfig::header("authorization", "Bearer ", "aff-key");
    let (app, emulator) = key_app("affinity", json!({"provider": "affinity"}), config).await;
    let (status, page) = post_form(&app, "affinity", &[("api_key", "wrong")]).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("Affinity did not accept this API key"),
        "{page}"
    );
    assert_eq!(app.connection_count().await, 0);
    let id = app
        .connect_through("aff", "affinity", Some(&[("api_key", " aff-key ")]))
        .await;
    let headers = proxied_headers(&app, &id).await;
    assert_eq!(headers["authorization"], "Bearer aff-key");
    assert_eq!(emulator.control.refused(), 1);
}

#[tokio::test]
async fn apollo_reads_a_refusal_inside_a_200_and_sends_the_key_in_x_api_key() {
    let mut config = KeyApiConfig::header("x-api-key", "", "apollo-key");
    config.bad_key_body = Some(json!({"healthy": true, "is_logged_in": false}));
    config.ok_fields = json!({"healthy": true, "is_logged_in": true})
        .as_object()
        .unwrap()
        .clone();
    let (app, _emulator) = key_app("apollo", json!({"provider": "apollo"}), config).await;
    let (status, page) = post_form(&app, "apollo", &[("api_key", "wrong")]).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("Apollo did not accept this API key"),
        "{page}"
    );
    assert_eq!(app.connection_count().await, 0);
    let id = app
        .connect_through("ap", "apollo", Some(&[("api_key", "apollo-key")]))
        .await;
    assert_eq!(proxied_headers(&app, &id).await["x-api-key"], "apollo-key");
}

#[tokio::test]
async fn copper_by_api_key_sends_the_key_the_owner_email_and_the_application() {
    let config = KeyApiConfig::header("x-pw-accesstoken", "", "cu-key")
        .requiring("x-pw-useremail", "ann@acme.example")
        .requiring("x-pw-application", "developer_api");
    let (app, _emulator) = key_app("copper", json!({"provider": "copper-api-key"}), config).await;
    // The right key with someone else's address is refused like a wrong key.
    let (status, _) = post_form(
        &app,
        "copper",
        &[("api_key", "cu-key"), ("email", "bob@acme.example")],
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post_form(&app, "copper", &[("api_key", "cu-key"), ("email", "nope")]).await;
    assert_eq!(status, 422, "not an email address");
    assert_eq!(app.connection_count().await, 0);
    let form: &[(&str, &str)] = &[("api_key", "cu-key"), ("email", " Ann@Acme.example ")];
    let id = app.connect_through("cu", "copper", Some(form)).await;
    assert_eq!(
        app.get_connection(&id).await["metadata"]["email"],
        "ann@acme.example"
    );
    let headers = proxied_headers(&app, &id).await;
    assert_eq!(headers["x-pw-accesstoken"], "cu-key");
    assert_eq!(headers["x-pw-application"], "developer_api");
}

#[tokio::test]
async fn odoo_holds_the_host_to_odoo_online_and_sends_a_bearer_key() {
    let config = KeyApiConfig::header("authorization", "bearer ", "odoo-key");
    let (app, emulator) = key_app("odoo", json!({"provider": "odoo"}), config).await;
    for evil in [
        "127.0.0.1",
        "evil.example",
        "acme.odoo.com.evil.example",
        "a@acme.odoo.com",
    ] {
        let (status, _) = post_form(&app, "odoo", &[("host", evil), ("api_key", "odoo-key")]).await;
        assert_eq!(status, 422, "{evil} accepted");
    }
    assert_eq!(
        emulator.control.calls(),
        0,
        "a refused host never reaches the network"
    );
    let form: &[(&str, &str)] = &[("host", "https://Acme.odoo.com/"), ("api_key", "odoo-key")];
    let id = app.connect_through("od", "odoo", Some(form)).await;
    assert_eq!(
        app.get_connection(&id).await["metadata"]["host"],
        "acme.odoo.com"
    );
    assert_eq!(
        proxied_headers(&app, &id).await["authorization"],
        "bearer odoo-key"
    );
}

#[tokio::test]
async fn follow_up_boss_sends_the_key_as_basic_and_the_system_headers() {
    let basic = STANDARD.encode("fub-key:");
    let config = KeyApiConfig::header("authorization", "Basic ", &basic)
        .requiring("x-system", "TetherTest")
        .requiring("x-system-key", "system-secret");
    let table = json!({
        "provider": "follow-up-boss",
        "system": "TetherTest",
        "system_key": "system-secret",
    });
    let (app, _emulator) = key_app("fub", table, config).await;
    let (status, page) = post_form(&app, "fub", &[("api_key", "wrong")]).await;
    assert_eq!(status, 422, "{page}");
    assert!(!page.contains("system-secret"));
    let id = app
        .connect_through("fub-user", "fub", Some(&[("api_key", "fub-key")]))
        .await;
    let headers = proxied_headers(&app, &id).await;
    assert_eq!(headers["x-system"], "TetherTest");
    assert_eq!(headers["x-system-key"], "system-secret");
    let connection = app.get_connection(&id).await;
    assert!(
        !connection.to_string().contains("system-secret"),
        "{connection}"
    );
}

#[tokio::test]
async fn the_catalog_offers_the_new_providers_and_variants() {
    let app = spawn_app().await;
    let body: Value = app
        .api(reqwest::Method::GET, "v1/providers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers = body["providers"].as_array().unwrap();
    assert!(providers.len() >= 44, "{} providers", providers.len());
    let by_id = |id: &str| {
        providers
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} missing"))
    };
    for id in [
        "highlevel",
        "odoo",
        "affinity",
        "follow-up-boss",
        "apollo",
        "salesforce-client-credentials",
        "salesforce-jwt-bearer",
        "copper-api-key",
    ] {
        by_id(id);
    }
    // The JWT bearer variant asks the operator for a key, never for a client secret.
    let jwt = by_id("salesforce-jwt-bearer");
    assert_eq!(jwt["auth_mode"], "oauth2_client_credentials");
    let operator = jwt["operator"].as_array().unwrap();
    let names: Vec<&str> = operator
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"client_secret"), "{names:?}");
    let key = operator
        .iter()
        .find(|i| i["name"] == "private_key")
        .unwrap();
    assert_eq!(key["secret"], true);
}
