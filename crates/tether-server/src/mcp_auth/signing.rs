//! The request parameter Tether sends to the app's sign-in page: `<opaque id>.<HMAC>`. The id
//! names a waiting authorization request (the store keeps only its hash); the HMAC-SHA256 over
//! it, under a key every instance shares, lets any instance refuse a forged or altered
//! parameter before touching the database. The key is random, sealed by the vault and stored
//! once (the first instance to start writes it; the others read it).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tether_core::random;
use tether_store::{Sealed, Store, TokenHash};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::state::AppState;

/// The vault context of the sealed key (its associated data): a sealed value moved to
/// another column fails to open.
pub(crate) const SEALING_CONTEXT: &str = "mcp_oauth_signing_key";

/// The key once read (per instance).
pub type KeyCell = OnceCell<Zeroizing<Vec<u8>>>;

/// A request id and the parameter that carries it.
pub struct SignedRequest {
    /// What the store keys the request by.
    pub hash: TokenHash,
    /// `tether_request`'s value.
    pub parameter: String,
}

async fn key<S: Store>(state: &AppState<S>) -> anyhow::Result<&[u8]> {
    let key = state
        .mcp_auth
        .signing_key
        .get_or_try_init(|| async {
            let candidate = Zeroizing::new(random::token().into_bytes());
            let sealed = state
                .vault
                .seal(SEALING_CONTEXT, &candidate)
                .map_err(anyhow::Error::new)?;
            let stored = state
                .store
                .mcp_signing_key(&Sealed::from_bytes(sealed), state.clock.now())
                .await?;
            let opened = state
                .vault
                .open(SEALING_CONTEXT, stored.as_bytes())
                .map_err(anyhow::Error::new)?;
            anyhow::Ok(Zeroizing::new(opened))
        })
        .await?;
    Ok(key.as_slice())
}

fn mac(key: &[u8], id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac
}

/// A fresh request id, signed.
pub async fn new_request<S: Store>(state: &AppState<S>) -> anyhow::Result<SignedRequest> {
    let id = random::token();
    let tag = hex::encode(mac(key(state).await?, &id).finalize().into_bytes());
    Ok(SignedRequest {
        hash: TokenHash::of(&id),
        parameter: format!("{id}.{tag}"),
    })
}

/// The stored hash of the request a parameter names, when its signature holds (compared in
/// constant time); `None` for anything forged, altered or malformed.
pub async fn verify<S: Store>(
    state: &AppState<S>,
    parameter: &str,
) -> anyhow::Result<Option<TokenHash>> {
    // 43 characters of id, a dot, 64 of hex: anything longer is not ours.
    if parameter.len() > 128 {
        return Ok(None);
    }
    let Some((id, tag)) = parameter.split_once('.') else {
        return Ok(None);
    };
    let Ok(tag) = hex::decode(tag) else {
        return Ok(None);
    };
    let valid = mac(key(state).await?, id).verify_slice(&tag).is_ok();
    Ok(valid.then(|| TokenHash::of(id)))
}
