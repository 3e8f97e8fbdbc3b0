//! Identifiers parsed at the edge ("parse, don't validate"): an [`IntegrationKey`] or a
//! [`ConnectionId`] that exists is well formed, so the rest of the code never re-checks.

use std::fmt;

/// Why an identifier was refused; the message is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(&'static str);

/// The app's name for one integration, e.g. `redtail` or `crm-sandbox`:
/// 1 to 64 of `a-z 0-9 - _`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct IntegrationKey(String);

impl TryFrom<&str> for IntegrationKey {
    type Error = IdError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && value.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(IntegrationKey(value.to_owned()))
        } else {
            Err(IdError(
                "an integration key is 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ))
        }
    }
}

impl IntegrationKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IntegrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection's id: `conn_` followed by a UUIDv7 in simple (32 hex digit) form, so ids sort
/// by creation time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

const CONNECTION_PREFIX: &str = "conn_";

impl ConnectionId {
    pub fn generate() -> Self {
        let mut id = String::with_capacity(CONNECTION_PREFIX.len() + 32);
        id.push_str(CONNECTION_PREFIX);
        id.push_str(&uuid::Uuid::now_v7().simple().to_string());
        ConnectionId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ConnectionId {
    type Error = IdError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        match value.strip_prefix(CONNECTION_PREFIX) {
            Some(hex)
                if hex.len() == 32
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(ConnectionId(value.to_owned()))
            }
            _ => Err(IdError(
                "a connection id looks like conn_ followed by 32 hex digits",
            )),
        }
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The app's own id for an end user: 1 to 255 printable characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EndUserId(String);

impl TryFrom<&str> for EndUserId {
    type Error = IdError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
            return Err(IdError(
                "end_user.id must be 1 to 255 characters with no control characters",
            ));
        }
        Ok(EndUserId(value.to_owned()))
    }
}

impl EndUserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn connection_ids_round_trip() {
        let id = ConnectionId::generate();
        assert_eq!(ConnectionId::try_from(id.as_str()).unwrap(), id);
        assert!(ConnectionId::try_from("conn_../../etc").is_err());
        assert!(ConnectionId::try_from("x").is_err());
    }

    proptest! {
        #[test]
        fn integration_keys_never_contain_path_characters(s in ".{0,80}") {
            if let Ok(key) = IntegrationKey::try_from(s.as_str()) {
                prop_assert!(!key.as_str().contains(['/', '.', '%', '?', '#', ' ']));
                prop_assert!(key.as_str().len() <= 64);
            }
        }
    }
}
