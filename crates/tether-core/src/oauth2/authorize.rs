//! The authorization request (RFC 6749 4.1.1, RFC 7636 4.3).

use url::Url;

use crate::integration::OAuth2Client;

/// The provider URL the browser is sent to. `code_challenge` is the S256 challenge when PKCE
/// is on. Parameters are added with `url`'s serializer, so nothing is interpolated by hand,
/// and parameters already on the configured URL are kept.
pub fn authorization_url(
    client: &OAuth2Client,
    state: &str,
    redirect_uri: &Url,
    code_challenge: Option<&str>,
) -> Url {
    let mut url = client.authorization_url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", state);
        if !client.scopes.is_empty() {
            query.append_pair("scope", &client.scopes.join(&client.scope_separator));
        }
        if let Some(challenge) = code_challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        for (name, value) in &client.authorization_params {
            query.append_pair(name, value);
        }
    }
    url
}
