//! Runs the seeds' OAuth 2.0 CRM emulator on a loopback port until Ctrl-C, for the README's
//! walkthrough. (`tether demo` runs every emulator together with the gateway.)

use clap::Parser;
use tether_emulators::seed_oauth::{self, Consent, SeedOAuthConfig};

#[derive(Parser)]
#[command(about = "Run the seeds' OAuth 2.0 CRM emulator on 127.0.0.1")]
struct Args {
    /// Loopback port to listen on.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Show a consent page with Approve and Deny instead of approving at once.
    #[arg(long)]
    consent_page: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = SeedOAuthConfig {
        consent: if args.consent_page {
            Consent::Page
        } else {
            Consent::AutoApprove
        },
        ..SeedOAuthConfig::default()
    };
    let running = seed_oauth::spawn_on(config.clone(), args.port).await?;
    println!("Seed OAuth CRM emulator at {}", running.base_url());
    println!(
        "  client_id = {:?}, client_secret = {:?}",
        config.client_id, config.client_secret
    );
    println!(
        "  authorize: {}",
        running
            .base_url()
            .join("oauth/authorize")
            .expect("static path")
    );
    println!(
        "  token:     {}",
        running.base_url().join("oauth/token").expect("static path")
    );
    println!(
        "  API:       GET {}",
        running.base_url().join("v1/deals").expect("static path")
    );
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
    Ok(())
}
