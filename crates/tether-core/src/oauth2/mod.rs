//! OAuth 2.0 (RFC 6749) as Tether runs it: building the authorization request, and the token
//! endpoint client for the authorization-code, client-credentials and refresh-token grants,
//! the connection values kept from token responses, and revocation
//! (RFC 7009).

mod authorize;
mod token;

pub use authorize::authorization_url;
pub use token::{
    TokenError, client_credentials, exchange_code, parse_token_response, password, refresh, revoke,
    token_metadata, tokens_from_object,
};
