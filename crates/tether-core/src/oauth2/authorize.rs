//! The authorization request (RFC 6749 4.1.1, RFC 7636 4.3).

use url::Url;

use crate::integration::{OAuth2Client, UrlError, Vars};

/// The provider URL the browser is sent to. `code_challenge` is the S256 challenge when PKCE
/// is on. `vars` gives the integration's settings and what the end user entered before the
/// redirect (a tenant, a subdomain), which the catalog's templates may read. Parameters are
/// added with `url`'s serializer, so nothing is interpolated by hand, and parameters already
/// on the configured URL are kept.
pub fn authorization_url(
    client: &OAuth2Client,
    vars: &Vars<'_>,
    state: &str,
    redirect_uri: &Url,
    code_challenge: Option<&str>,
) -> Result<Url, UrlError> {
    let mut url = client.authorization_url.render(vars, &client.hosts)?;
    let scope = client.scope(vars)?;
    let extra = client
        .authorization_params
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.render(vars)?)))
        .collect::<Result<Vec<_>, UrlError>>()?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", state);
        if let Some(scope) = &scope {
            query.append_pair("scope", scope);
        }
        if let Some(challenge) = code_challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        for (name, value) in &extra {
            query.append_pair(name, value);
        }
    }
    Ok(url)
}
