//! Opaque stored values: token hashes and vault-sealed bytes, each its own type.
//!
//! Neither is secret on its own, but a hash looks a row up and sealed bytes are a secret at
//! rest, so neither may reach a log line; and a distinct type stops a raw token being stored
//! where its hash belongs. Their `Debug` is redacted here once, so the rows that hold them
//! derive theirs.

/// A hash of a token (hex SHA-256), as stored in place of the token. Not secret, but it looks
/// a row up, so `Debug` shows `<hash>` only. A distinct type so a raw token cannot be stored
/// where its hash belongs; it reads as `&str` (deref) for the SQL that binds it.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of `token` (hex SHA-256), which is what the store keeps and looks rows up by.
    /// The one place a token becomes its hash, so every caller hashes the same way.
    pub fn of(token: &str) -> Self {
        use sha2::Digest;
        TokenHash(hex::encode(sha2::Sha256::digest(token.as_bytes())))
    }

    /// Wraps a hash already computed (read back from the store).
    pub fn from_hex(hex: impl Into<String>) -> Self {
        TokenHash(hex.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hash>")
    }
}

impl std::ops::Deref for TokenHash {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Bytes sealed by the vault (AEAD ciphertext with its header). Not readable without the key,
/// but still never printed: `Debug` shows the length only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Sealed(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<sealed, {} bytes>", self.0.len())
    }
}

impl std::ops::Deref for Sealed {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_hashes_and_sealed_bytes() {
        let hash = TokenHash::from_hex("9f86d081884c7d659a2feaa0c55ad015");
        assert_eq!(format!("{hash:?}"), "<hash>");
        assert_eq!(&*hash, "9f86d081884c7d659a2feaa0c55ad015");
        let sealed = Sealed::from_bytes(b"ciphertext".to_vec());
        assert_eq!(format!("{sealed:?}"), "<sealed, 10 bytes>");
        assert_eq!(sealed.as_bytes(), b"ciphertext");
    }

    #[test]
    fn of_is_the_hex_sha256_of_the_token() {
        // SHA-256 of "test", as `sha256sum` prints it.
        assert_eq!(
            TokenHash::of("test").as_str(),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
