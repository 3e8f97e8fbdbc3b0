//! The `end_user` object of the API's request bodies (`{id, email?, display_name?}`), parsed
//! once for every endpoint that takes one.

use serde::Deserialize;
use tether_core::ids::EndUserId;

use crate::connection_service::persist::EndUser;
use crate::http::error::ApiError;

/// The end user, as the app knows them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndUserBody {
    /// The app's own id for the end user (1 to 255 characters, no control or bidirectional
    /// control characters).
    id: String,
    /// Shown on the Connect page ("for ada@example.com"), so a person notices a link that is
    /// not theirs (at most 320 characters, no control or bidirectional control characters).
    #[serde(default)]
    email: Option<String>,
    /// Shown on the Connect page when there is no email (as `email`: at most 320 characters,
    /// no control or bidirectional control characters).
    #[serde(default)]
    display_name: Option<String>,
}

/// Longest email or display name kept (an email address can be 320 characters).
const MAX_TEXT: usize = 320;

impl EndUserBody {
    /// The end user, or `invalid_end_user` naming the field to fix.
    pub fn parse(self) -> Result<EndUser, ApiError> {
        let id = EndUserId::try_from(self.id.as_str())
            .map_err(|e| ApiError::bad_request("invalid_end_user", e.to_string()))?;
        // Shown on the Connect page and the console: a bidirectional control could make one
        // person's address read as another's there, so it is refused like a control character.
        if self.id.chars().any(tether_core::text::is_bidi_control) {
            return Err(ApiError::bad_request(
                "invalid_end_user",
                "end_user.id must have no bidirectional control characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)",
            ));
        }
        for (name, value) in [
            ("end_user.email", &self.email),
            ("end_user.display_name", &self.display_name),
        ] {
            if value.as_ref().is_some_and(|v| {
                v.len() > MAX_TEXT
                    || v.chars()
                        .any(|c| c.is_control() || tether_core::text::is_bidi_control(c))
            }) {
                return Err(ApiError::bad_request(
                    "invalid_end_user",
                    format!(
                        "{name} must be at most {MAX_TEXT} characters with no control or bidirectional control characters"
                    ),
                ));
            }
        }
        Ok(EndUser {
            id: id.as_str().to_owned(),
            email: self.email,
            display_name: self.display_name,
        })
    }
}
