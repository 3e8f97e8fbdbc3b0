//! The `tether` binary from the outside: first run with no configuration, configured keys,
//! and configuration errors as one line with a non-zero exit.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tether_test_support::{TetherProcess, eventually, tether_command};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// An API key of the minimum length (32 characters).
const CONFIGURED_KEY: &str = "configured-key-for-tests-0123456";

/// `tether` in `dir`, clean environment, free loopback port.
fn tether(dir: &Path) -> Command {
    tether_command(BIN, dir)
}

/// Starts `tether serve` and waits (bounded) until it says where it listens.
async fn serve(mut command: Command) -> TetherProcess {
    command.arg("serve");
    TetherProcess::start(command, Duration::from_secs(30)).await
}

/// The status of `GET /v1/connections` with `key`.
async fn status_with_key(served: &TetherProcess, key: &str) -> u16 {
    reqwest::Client::new()
        .get(served.url("v1/connections"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn first_run_creates_a_private_key_file_and_prints_an_api_key_once() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(tether(dir.path())).await;
    let key = served
        .printed_key()
        .expect("an API key is printed on first run");
    let mode = std::fs::metadata(dir.path().join("tether.keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The database holds emails, hashes and sealed secrets: private too, with its WAL.
    for name in ["tether.db", "tether.db-wal", "tether.db-shm"] {
        let path = dir.path().join(name);
        if name == "tether.db" || path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    let health = reqwest::get(served.url("health")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(status_with_key(&served, &key).await, 200);
    assert_eq!(status_with_key(&served, "tether_sk_wrong").await, 401);
    served.kill().await;

    let mut again = serve(tether(dir.path())).await;
    assert!(
        again.printed_key().is_none(),
        "the key is printed only once"
    );
    assert_eq!(
        status_with_key(&again, &key).await,
        200,
        "the first-run key still works"
    );
    again.kill().await;
}

#[tokio::test]
async fn a_configured_api_key_is_used_and_none_is_created() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut command = tether(dir.path());
    command.env("TETHER_API_KEY", CONFIGURED_KEY);
    let mut served = serve(command).await;
    assert!(served.printed_key().is_none());
    assert_eq!(status_with_key(&served, CONFIGURED_KEY).await, 200);
    served.kill().await;
}

#[tokio::test]
async fn configuration_errors_are_one_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("surprise = 1\n", "surprise"),
        (
            "[integrations.crm]\nprovider = \"oauth2\"\nclient_id = \"c\"\ntokn_url = \"x\"\n",
            "integrations.crm: unknown key \"tokn_url\"",
        ),
        (
            "[integrations.crm]\nprovider = \"oauth2\"\nclient_id = \"c\"\nclient_secret = \"env:TETHER_TEST_MISSING\"\nauthorization_url = \"https://a.example/auth\"\ntoken_url = \"https://a.example/token\"\napi_base_url = \"https://a.example\"\n",
            "TETHER_TEST_MISSING is not set",
        ),
        (
            "[cache]\nttl_secs = 0\n",
            "cache.ttl_secs must be at least 1",
        ),
        ("[cache]\ncapacty = 5\n", "capacty"),
        (
            "[server]\nthreads = 0\n",
            "server.threads must be at least 1",
        ),
        (
            "[server]\nthreads = 100000\n",
            "server.threads must be at most 1024",
        ),
        // Seconds the server adds to unix times: a typo this large would overflow them.
        (
            "[connect]\nflow_ttl_secs = 9223372036854775807\n",
            "connect.flow_ttl_secs must be at most",
        ),
        (
            "[webhooks]\nurl = \"https://app.example/hooks\"\nsecret = \"0123456789abcdef0123456789abcdef\"\nrequest_timeout_secs = 9223372036854775807\n",
            "webhooks.request_timeout_secs must be at most",
        ),
        (
            "[server]\nidle_timeout_secs = 9223372036854775807\n",
            "server.idle_timeout_secs must be at most",
        ),
        // Every section is declared the same way: unknown keys and zeros stop start-up too.
        ("[server]\nlistn = \"127.0.0.1:0\"\n", "listn"),
        ("[database]\npool = 3\n", "pool"),
        ("[log]\nformat = \"xml\"\n", "xml"),
        (
            "[server]\nmax_body_bytes = 0\n",
            "server.max_body_bytes must be at least 1",
        ),
        (
            "[console]\nhistory_days = 0\n",
            "console.history_days must be at least 1",
        ),
    ];
    for (toml, expected) in cases {
        std::fs::write(dir.path().join("tether.toml"), toml).unwrap();
        let output = tether(dir.path()).arg("serve").output().await.unwrap();
        assert!(!output.status.success(), "{toml}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("tether: "), "{stderr}");
        assert!(
            lines[0].contains(expected),
            "{stderr} should say {expected}"
        );
    }
}

/// The JWT bearer grant's private key is parsed at start-up: a value that is not an RSA key
/// in PEM stops `serve` with one line naming the setting, never quoting the value.
#[tokio::test]
async fn a_jwt_bearer_key_that_does_not_parse_stops_start_up_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nc2Vrcml0LXZhbHVl\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let file_ref = ["file:", garbage.to_str().unwrap()].concat();
    let cases = [
        (
            "sekrit-value",
            "integrations.sf: private_key is not a PEM private key",
        ),
        (
            file_ref.as_str(),
            "integrations.sf: private_key is not a usable RSA private key",
        ),
    ];
    for (key, expected) in cases {
        let toml = [
            "[integrations.sf]\nprovider = \"salesforce-jwt-bearer\"\nclient_id = \"c\"\n",
            "username = \"sync@acme.example\"\nprivate_key = \"",
            key,
            "\"\n",
        ]
        .concat();
        std::fs::write(dir.path().join("tether.toml"), toml).unwrap();
        let output = tether(dir.path()).arg("serve").output().await.unwrap();
        assert!(!output.status.success(), "{key}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].contains(expected),
            "{stderr} should say {expected}"
        );
        assert!(
            !stderr.contains("sekrit") && !stderr.contains("c2Vrcml0"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_demo_session_ttl_too_large_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = tether(dir.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--session-ttl"])
        .arg("9223372036854775807")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].starts_with("tether: --session-ttl must be at most"),
        "{stderr}"
    );
}

#[tokio::test]
async fn database_errors_stop_start_up_with_one_line_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite database that a newer Tether migrated: one migration this build lacks.
    let newer = dir.path().join("newer.db");
    let newer_url = format!("sqlite://{}", newer.display());
    let migrated = tether(dir.path())
        .arg("migrate")
        .env("TETHER_DATABASE__URL", &newer_url)
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&newer_url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (29991231000001, 'from the future', 1, x'00', 1)",
        )
        .execute(&mut db)
        .await
        .unwrap();
    }
    let cases = [
        // Nothing listens on port 1: unreachable. The password must not be printed.
        (
            "postgres://postgres:hunter2@127.0.0.1:1/test".to_owned(),
            "database unavailable",
        ),
        // The driver also reads a password from the query string.
        (
            "postgres://postgres@127.0.0.1:1/test?password=hunter2".to_owned(),
            "database unavailable",
        ),
        (
            "mysql://tether@127.0.0.1/tether".to_owned(),
            "invalid database URL",
        ),
        (
            "postgres://postgres@127.0.0.1:5432/tether_no_such_database".to_owned(),
            "\"tether_no_such_database\" does not exist",
        ),
        (
            newer_url,
            "migration 29991231000001, which this build does not know",
        ),
    ];
    for (url, expected) in cases {
        for command in ["serve", "migrate"] {
            let output = tether(dir.path())
                .arg(command)
                .env("TETHER_DATABASE__URL", &url)
                .output()
                .await
                .unwrap();
            assert!(!output.status.success(), "{command} {url}");
            let stderr = String::from_utf8(output.stderr).unwrap();
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{command} {url}: one line: {stderr}");
            assert!(lines[0].starts_with("tether: "), "{stderr}");
            assert!(
                lines[0].contains(expected),
                "{stderr} should say {expected}"
            );
            assert!(
                !stderr.contains("hunter2"),
                "the password is redacted: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn providers_list_shows_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let output = tether(dir.path())
        .args(["providers", "list"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("oauth2"), "{stdout}");
    // One line per provider after the header: the whole catalog, at least 30 CRMs.
    assert!(stdout.lines().count() > 30, "{stdout}");
    for id in [
        "salesforce",
        "hubspot",
        "wealthbox",
        "zoho-crm",
        "dynamics-365",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(id)),
            "{id} missing: {stdout}"
        );
    }
}

#[tokio::test]
async fn providers_show_tells_who_configures_what() {
    let dir = tempfile::tempdir().unwrap();
    let output = tether(dir.path())
        .args(["providers", "show", "kommo"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "kommo: Kommo (oauth2)",
        "  client_id",
        "keeps subdomain from the redirect back (referer)",
        "JSON token requests",
        "Documentation: https://developers.kommo.com/",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing: {stdout}");
    }
    // The record of the file's last check against the provider's pages, and what it could
    // not confirm; a sunset still ahead is named with the date.
    let output = tether(dir.path())
        .args(["providers", "show", "hubspot"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "Verified: 20",
        "  https://developers.hubspot.com/changelog/v1-oauth-api-deprecation",
        "Cross-checked with:",
        "Not confirmed (an integration can override these):",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing: {stdout}");
    }
    assert!(!stdout.contains("Problem: "), "{stdout}");
    let output = tether(dir.path())
        .args(["providers", "show", "nope"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no provider \"nope\""), "{stderr}");
}

/// reqwest is built without a TLS provider; these tests only speak plain HTTP on loopback,
/// but building a client still needs one installed.
fn tether_core_free_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn the_seed_flows_example_configures_both_integrations() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed-flows.toml");
    let output = tether(dir.path())
        .arg("--config")
        .arg(example)
        .args(["integrations", "list"])
        .env("REDTAIL_CLIENT_SECRET", "test-secret")
        .env("SALESMATE_CLIENT_SECRET", "test-secret")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("redtail-oauth") && stdout.contains("salesmate-oauth"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_dotenv_file_supplies_configuration() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    // A malformed .env is a one-line error naming the file, not a silent skip.
    std::fs::write(&dotenv, "TETHER_CONNECT__APP_NAME=Dotenv App\n").unwrap();
    let output = tether(dir.path()).arg("serve").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(".env"), "{stderr}");

    std::fs::write(
        &dotenv,
        "TETHER_API_KEY=key-from-dotenv-0123456789abcdef0123\nTETHER_CONNECT__APP_NAME=\"Dotenv App\"\n",
    )
    .unwrap();
    let mut served = serve(tether(dir.path())).await;
    assert!(
        served.printed_key().is_none(),
        "the .env key is used, none is made"
    );
    assert_eq!(
        status_with_key(&served, "key-from-dotenv-0123456789abcdef0123").await,
        200
    );
    served.kill().await;
}

#[tokio::test]
async fn short_api_keys_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tether(dir.path());
    command.env("TETHER_API_KEY", "abc");
    let output = command.arg("serve").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("at least 32"), "{stderr}");

    std::fs::write(
        dir.path().join("tether.toml"),
        "[api]\nkeys = [\"short-but-not-enough\"]\n",
    )
    .unwrap();
    let output = tether(dir.path()).arg("serve").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("api.keys[0]"), "{stderr}");
}

#[tokio::test]
async fn an_existing_database_readable_by_others_is_made_private() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tether.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = tether(dir.path());
    command.env("TETHER_API_KEY", CONFIGURED_KEY);
    let mut served = serve(command).await;
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    served.kill().await;
}

#[tokio::test]
async fn server_limits_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tether.toml"),
        "[server]\nheader_read_timeout_secs = 0\n",
    )
    .unwrap();
    let output = tether(dir.path()).arg("serve").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("server.header_read_timeout_secs"),
        "{stderr}"
    );
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = tether(dir.path());
    command
        .env("TETHER_API_KEY", CONFIGURED_KEY)
        .env("TETHER_SERVER__METRICS_LISTEN", format!("127.0.0.1:{port}"));
    let mut served = serve(command).await;
    let public = reqwest::get(served.url("metrics")).await.unwrap();
    assert_eq!(public.status(), 404, "not on the public listener");
    let private = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    assert!(private.text().await.unwrap().contains("tether_"));
    served.kill().await;
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut command = tether(dir.path());
    command
        .env("TETHER_API_KEY", CONFIGURED_KEY)
        .env("TETHER_LOG__FORMAT", "json")
        .env("RUST_LOG", "info");
    let mut served = serve(command).await;
    let response = reqwest::Client::new()
        .get(served.url("v1/connections"))
        .bearer_auth("a-wrong-key-that-gets-logged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let found = eventually(
        Duration::from_secs(10),
        "a log line of that request",
        || async {
            served.stderr().lines().find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
                (entry["span"]["request_id"] == id.as_str()).then_some(entry)
            })
        },
    )
    .await;
    assert_eq!(found["fields"]["message"], "request with a wrong API key");
    assert!(!found.to_string().contains("a-wrong-key-that-gets-logged"));
    served.kill().await;
}

#[tokio::test]
async fn every_tuning_setting_is_read_and_checked() {
    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    // A private CA for `extra_ca_file`, made now (its key is dropped at once).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(
        dir.path().join("ca.pem"),
        ca.self_signed(&ca_key).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tether.toml"),
        "[connect]\nsession_ttl_secs = 900\nflow_ttl_secs = 300\nattempts_per_session = 5\n\
         attempts_window_secs = 300\nmax_flows_per_session = 5\npurge_interval_secs = 30\n\
         [api]\nkey_failures_max = 20\nkey_failures_window_secs = 120\n\
         [refresh]\nmargin_secs = 120\nlease_secs = 20\nahead_secs = 300\ninterval_secs = 10\n\
         concurrency = 4\nbackoff_base_secs = 10\nbackoff_max_secs = 600\n\
         [outbound]\nconnect_timeout_secs = 3\nrequest_timeout_secs = 10\nmax_response_bytes = 65536\n\
         extra_ca_file = \"ca.pem\"\n\
         allowed_private_networks = [\"127.0.0.0/8\", \"fd00::/8\", \"10.20.0.5\"]\n\
         [proxy]\nread_timeout_secs = 30\ntotal_timeout_secs = 120\nretry_body_bytes = 65536\n\
         max_in_flight_per_host = 16\n\
         [cache]\ncapacity = 1000\nttl_secs = 60\n\
         [checks]\ninterval_secs = 3600\njitter_percent = 20\nconcurrency = 2\n\
         failures_before_reauth = 5\nretry_secs = 600\ntick_secs = 10\nexpiring_notice_days = 7\n\
         min_interval_secs = { hubspot = 86400 }\n\
         [webhooks]\nurl = \"http://127.0.0.1:9/hooks\"\nsecret = \"whsec\"\nrequest_timeout_secs = 5\n\
         max_attempts = 3\nretry_base_secs = 2\nretry_max_secs = 60\npoll_interval_secs = 2\n",
    )
    .unwrap();
    let mut command = tether(dir.path());
    command
        .env("TETHER_API_KEY", CONFIGURED_KEY)
        // The environment too, over the file.
        .env("TETHER_REFRESH__CONCURRENCY", "2")
        .env("TETHER_PROXY__MAX_IN_FLIGHT_PER_HOST", "0");
    let mut served = serve(command).await;
    served.kill().await;

    for (toml, key) in [
        ("[refresh]\nconcurrency = 0\n", "refresh.concurrency"),
        (
            "[proxy]\nread_timeout_secs = 0\n",
            "proxy.read_timeout_secs",
        ),
        (
            "[connect]\nsession_ttl_secs = 5\n",
            "connect.session_ttl_secs",
        ),
        ("[refresh]\nmargins_secs = 1\n", "margins_secs"),
        ("[checks]\ninterval_secs = 5\n", "checks.interval_secs"),
        ("[checks]\njitter_percent = 60\n", "checks.jitter_percent"),
        (
            "[checks]\nmin_interval_secs = { crm = 0 }\n",
            "checks.min_interval_secs.crm",
        ),
        (
            "[proxy]\nmax_in_flight_per_host = -1\n",
            "max_in_flight_per_host",
        ),
        (
            "[proxy]\nmax_in_flight_per_hosts = 1\n",
            "max_in_flight_per_hosts",
        ),
        (
            "[outbound]\nextra_ca_file = \"missing.pem\"\n",
            "outbound.extra_ca_file missing.pem",
        ),
        (
            "[outbound]\nallowed_private_networks = [\"intranet\"]\n",
            "outbound.allowed_private_networks",
        ),
        (
            "[outbound]\nallowed_private_networks = [\"10.0.0.0/33\"]\n",
            "outbound.allowed_private_networks",
        ),
        (
            "[proxy]\ntotal_timeout_secs = 0\n",
            "proxy.total_timeout_secs",
        ),
        // A file with no certificate in it: this very file.
        (
            "[outbound]\nextra_ca_file = \"tether.toml\"\n",
            "outbound.extra_ca_file tether.toml: no CERTIFICATE",
        ),
    ] {
        std::fs::write(dir.path().join("tether.toml"), toml).unwrap();
        let mut command = tether(dir.path());
        command.env("TETHER_API_KEY", CONFIGURED_KEY);
        let output = command.arg("serve").output().await.unwrap();
        assert!(!output.status.success(), "{toml}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{stderr} should name {key}");
    }
}

/// The names of `pid`'s threads (Linux: `/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[tokio::test]
async fn serving_on_three_threads_answers_every_connection_and_stops_on_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    tether_core_free_crypto();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tether.toml"), "[server]\nthreads = 3\n").unwrap();
    let mut command = tether(dir.path());
    command
        .env("TETHER_API_KEY", CONFIGURED_KEY)
        .env("RUST_LOG", "info");
    let mut served = serve(command).await;
    let pid = served.pid();
    // "Listening" is printed just before the serving threads start: give them a moment.
    let mut serving = eventually(Duration::from_secs(5), "two serving threads", || async {
        let serving: Vec<String> = thread_names(pid)
            .into_iter()
            .filter(|name| name.starts_with("tether-serve-"))
            .collect();
        (serving.len() >= 2).then_some(serving)
    })
    .await;
    serving.sort();
    assert_eq!(
        serving,
        ["tether-serve-1", "tether-serve-2"],
        "two serving threads besides the main one"
    );
    // Many requests at once, each on a fresh connection, so the kernel spreads them over
    // the three listening sockets; every one is answered, and answered right.
    let address = served.base().socket_addrs(|| None).unwrap()[0];
    let requests = (0..60).map(|n| async move {
        let (path, key, expected) = match n % 3 {
            0 => ("/health", CONFIGURED_KEY, "200"),
            1 => ("/v1/connections", CONFIGURED_KEY, "200"),
            // (Not a wrong key: enough of those lock the client out, by design.)
            _ => (
                "/v1/connections/conn_0123456789abcdef0123456789abcdef",
                CONFIGURED_KEY,
                "404",
            ),
        };
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(status, expected, "{path}: {response}");
        if path == "/v1/connections" && expected == "200" {
            let body = response.split("\r\n\r\n").nth(1).unwrap();
            let listed: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(listed["connections"], serde_json::json!([]), "{response}");
        }
    });
    let mut answered = tokio::task::JoinSet::new();
    for request in requests {
        answered.spawn(request);
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(done) = answered.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("every request is answered within 30 s");

    // Idle kept-alive connections (a client's pool) do not hold the shutdown up: they are
    // closed at once, whichever thread serves them.
    let pooled = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (pooled, url) = (pooled.clone(), served.url("health"));
        calls.spawn(async move { pooled.get(url).send().await.unwrap().status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let stopping = std::time::Instant::now();
    served.signal("TERM");
    let status = served.wait(Duration::from_secs(20)).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "idle connections held the shutdown up: {:?}",
        stopping.elapsed()
    );
    drop(pooled);
    let logs = served.stderr();
    assert!(status.success(), "{status:?}: {logs}");
    assert!(logs.contains("tether stopped"), "{logs}");
}

#[tokio::test]
async fn a_port_another_process_listens_on_is_refused_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    for threads in ["1", "3"] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = tether(dir.path());
        command
            .env("TETHER_API_KEY", CONFIGURED_KEY)
            .env("TETHER_SERVER__LISTEN", address.to_string())
            .env("TETHER_SERVER__THREADS", threads);
        let output = tokio::time::timeout(Duration::from_secs(30), command.arg("serve").output())
            .await
            .expect("tether exits within 30 s")
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!output.status.success(), "threads = {threads}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("tether: "), "{stderr}");
        assert!(
            lines[0].contains(&format!("cannot listen on {address}")),
            "{stderr}"
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(!stdout.contains("Tether is listening"), "{stdout}");
    }
    // The other process still has its port to itself.
    taken.set_nonblocking(true).unwrap();
    let _client = std::net::TcpStream::connect(address).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        taken.accept().is_ok(),
        "the connection went to the first listener"
    );
}
