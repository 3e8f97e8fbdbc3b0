//! OAuth 2.0 (RFC 6749) as Tether runs it: building the authorization request, and the token
//! endpoint client for the authorization-code and refresh-token grants and revocation
//! (RFC 7009).

mod authorize;
mod token;

pub use authorize::authorization_url;
pub use token::{
    TokenError, exchange_code, parse_token_response, refresh, revoke, tokens_from_object,
};
