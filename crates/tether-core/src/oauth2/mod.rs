//! OAuth 2.0 (RFC 6749) as Tether runs it: building the authorization request, and the token
//! endpoint client for the authorization-code, client-credentials and refresh-token grants,
//! the connection values kept from token responses, revocation (RFC 7009), and the JWT
//! bearer grant (RFC 7523).

mod authorize;
pub mod jwt_bearer;
mod token;

pub use authorize::authorization_url;
pub use token::{
    Revocable, TokenError, client_credentials, exchange_code, parse_token_response, password,
    refresh, revoke, token_metadata, tokens_from_object,
};
