//! The vault: seals and opens secrets with AES-256-GCM under a keyring.
//!
//! Each ciphertext records the id of the key that sealed it, so keys can rotate: new data is
//! sealed under the sealing key, and any key of the ring opens what it sealed. The sealing key
//! is the primary (first) key until the database announces one ([`Vault::announce`]): from then
//! on every instance seals under the announced key and under nothing else, and one that does
//! not hold it refuses to seal ([`VaultError::SealingKeyNotHeld`]) rather than seal under a key
//! a finished rotation would leave behind. The
//! caller passes the row's identity (e.g. `connections/<id>/credentials`) as associated data,
//! so a ciphertext copied into another row fails to open. There is no plaintext mode.
//!
//! Keys come from `TETHER_ENCRYPTION_KEYS` (`id:base64key,id:base64key`, primary first) or a
//! key file in the same format, one key a line, created with mode 0600 on first run.
//!
//! A running vault can take a new keyring without a restart: [`Vault::reload`] re-reads its key
//! file (the server calls it on SIGHUP), and a vault loaded from a key file re-reads it by
//! itself, at most once a second, when it meets a ciphertext sealed under a key id it does not
//! know yet (another process rotated the keys). Secrets stay sealed meanwhile.
//!
//! Sealed layout: `0x01 | len(key id) | key id | 12-byte nonce | ciphertext and tag`; the
//! header is authenticated too (it is part of the associated data).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Why the vault could not do its work. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no encryption key configured")]
    NoKeys,
    #[error("encryption key entry {0} is malformed: expected id:base64 of 32 bytes")]
    BadKey(usize),
    #[error("encryption key id {0:?} appears twice")]
    DuplicateKeyId(String),
    #[error("ciphertext was sealed with key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext does not open (wrong key, wrong row, or tampered)")]
    Open,
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} is readable by other users; run chmod 600 on it")]
    KeyFileMode(String),
    #[error("the keys were given inline (TETHER_ENCRYPTION_KEYS); restart to change them")]
    NotReloadable,
    #[error(
        "the database names key {0:?} as the sealing key, and this instance does not hold it; \
         add it to this instance's keys and restart it (a key file is re-read by itself)"
    )]
    SealingKeyNotHeld(String),
}

struct VaultKey {
    id: String,
    cipher: Aes256Gcm,
}

/// One set of keys, primary first.
struct Keyring {
    keys: Vec<VaultKey>,
}

/// The keyring, replaceable while in use. Share it behind an `Arc`.
pub struct Vault {
    ring: RwLock<Arc<Keyring>>,
    /// The key file this vault was loaded from, for reloads; `None` for keys given inline.
    source: Option<PathBuf>,
    /// When an unknown key id last made the vault re-read its key file.
    last_reload: Mutex<Option<Instant>>,
    /// The sealing key the database announces; `None` until one is announced (then the
    /// primary key seals).
    announced: RwLock<Option<String>>,
}

/// How often an unknown key id may make the vault re-read its key file.
const RELOAD_THROTTLE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        let ids: Vec<&str> = ring.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Vault").field("key_ids", &ids).finish()
    }
}

impl Vault {
    /// Parses `id:base64,id:base64` (commas or newlines between entries); the first is primary.
    pub fn from_spec(spec: &str) -> Result<Self, VaultError> {
        Ok(Vault {
            ring: RwLock::new(Arc::new(Keyring::from_spec(spec)?)),
            source: None,
            last_reload: Mutex::new(None),
            announced: RwLock::new(None),
        })
    }

    fn ring(&self) -> Arc<Keyring> {
        self.ring.read().expect("vault lock poisoned").clone()
    }

    /// A new random key entry (`id:base64`), for key files and `tether keys generate`.
    pub fn generate_key_entry() -> String {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        // The time tells an operator which key is older; the random part keeps two keys made
        // in the same second distinct.
        let id = format!(
            "k{}-{:06x}",
            crate::unix_time::now(),
            rand::random::<u32>() & 0xff_ffff
        );
        let entry = format!("{id}:{}", STANDARD.encode(bytes));
        zeroize::Zeroize::zeroize(&mut bytes);
        entry
    }

    /// Loads the key file at `path`, creating it (mode 0600, one fresh key) when missing.
    /// Refuses a file that group or others can read.
    pub fn load_or_create_key_file(path: &Path) -> Result<Self, VaultError> {
        let shown = path.display().to_string();
        let io = |source| VaultError::KeyFile {
            path: shown.clone(),
            source,
        };
        match write_key_file(path, &Self::generate_key_entry()) {
            Ok(()) => {}
            // Already there (made earlier, or by a process starting at the same moment).
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io(err)),
        }
        Self::load_key_file(path)
    }

    /// Loads the key file at `path` (which must exist and be private to its owner); the vault
    /// remembers the path for [`Vault::reload`].
    pub fn load_key_file(path: &Path) -> Result<Self, VaultError> {
        let ring = Keyring::from_spec(&read_key_file(path)?)?;
        Ok(Vault {
            ring: RwLock::new(Arc::new(ring)),
            source: Some(path.to_owned()),
            last_reload: Mutex::new(None),
            announced: RwLock::new(None),
        })
    }

    /// Puts a fresh key at the top of the key file at `path` (it seals new data from now on)
    /// and keeps the others, so existing ciphertexts still open. The new file is written
    /// beside the old one (mode 0600) and renamed over it, so a crash leaves one or the other,
    /// never a half-written key file.
    pub fn rotate_key_file(path: &Path) -> Result<Self, VaultError> {
        let shown = path.display().to_string();
        let io = |source| VaultError::KeyFile {
            path: shown.clone(),
            source,
        };
        check_private(path)?;
        let old = std::fs::read_to_string(path).map_err(io)?;
        Self::from_spec(&old)?;
        let mut contents = Self::generate_key_entry();
        contents.push('\n');
        contents.push_str(old.trim_end());
        let mut staging = path.as_os_str().to_owned();
        staging.push(".new");
        let staging = std::path::PathBuf::from(staging);
        // A staging file left by an interrupted rotation is ours to replace.
        match std::fs::remove_file(&staging) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
        write_key_file(&staging, &contents).map_err(io)?;
        zeroize::Zeroize::zeroize(&mut contents);
        std::fs::rename(&staging, path).map_err(io)?;
        Self::load_key_file(path)
    }

    /// The id of the first key of the ring (what a rotation announces).
    pub fn primary_key_id(&self) -> String {
        self.ring().keys[0].id.clone()
    }

    /// The ids of every key of the ring, primary first.
    pub fn key_ids(&self) -> Vec<String> {
        self.ring().keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Whether the ring holds the key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.ring().keys.iter().any(|k| k.id == id)
    }

    /// Takes `key_id` as the sealing key from now on (the database announced it). A key the
    /// ring does not hold makes a vault loaded from a key file re-read it first (throttled);
    /// when it still does not hold it, sealing fails until it does.
    pub fn announce(&self, key_id: &str) {
        let changed = {
            let mut announced = self.announced.write().expect("vault lock poisoned");
            let changed = announced.as_deref() != Some(key_id);
            *announced = Some(key_id.to_owned());
            changed
        };
        if !self.holds(key_id) && self.source.is_some() {
            self.reload_throttled();
        }
        if changed {
            if self.holds(key_id) {
                tracing::info!(key = key_id, "sealing under the key the database announces");
            } else {
                tracing::error!(
                    key = key_id,
                    "the database announces a sealing key this instance does not hold; \
                     nothing can be sealed until it is added"
                );
            }
        }
    }

    /// The key id announced by the database, if any.
    pub fn announced_key_id(&self) -> Option<String> {
        self.announced.read().expect("vault lock poisoned").clone()
    }

    /// The id of the key that seals new data: the announced key, else the primary.
    pub fn sealing_key_id(&self) -> Result<String, VaultError> {
        let ring = self.ring();
        Ok(ring.keys[self.sealing_index(&ring)?].id.clone())
    }

    /// Where the sealing key sits in `ring`; refused when an announced key is not there (a
    /// key file is re-read first, at most once a second).
    fn sealing_index(&self, ring: &Keyring) -> Result<usize, VaultError> {
        let Some(announced) = self.announced_key_id() else {
            return Ok(0);
        };
        if let Some(index) = ring.keys.iter().position(|k| k.id == announced) {
            return Ok(index);
        }
        Err(VaultError::SealingKeyNotHeld(announced))
    }

    /// The ring and the index of its sealing key, after re-reading a key file that lacks an
    /// announced key.
    fn sealing_ring(&self) -> Result<(Arc<Keyring>, usize), VaultError> {
        let ring = self.ring();
        match self.sealing_index(&ring) {
            Ok(index) => Ok((ring, index)),
            Err(err) if self.source.is_some() && self.reload_throttled() => {
                let ring = self.ring();
                let index = self.sealing_index(&ring).map_err(|_| err)?;
                Ok((ring, index))
            }
            Err(err) => Err(err),
        }
    }

    /// Seals `plaintext`, bound to `context` (the row's identity), under the sealing key.
    /// Fails only when the database announced a key this vault does not hold.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (ring, index) = self.sealing_ring()?;
        Ok(ring.seal(index, context, plaintext))
    }

    /// Opens what [`Vault::seal`] sealed with the same `context`. A key id this vault does not
    /// know makes a vault loaded from a key file re-read it first (throttled).
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        match self.ring().open(context, sealed) {
            Err(VaultError::UnknownKey(id)) if self.source.is_some() => {
                if self.reload_throttled() {
                    self.ring().open(context, sealed)
                } else {
                    Err(VaultError::UnknownKey(id))
                }
            }
            other => other,
        }
    }

    /// Re-seals `sealed` under the sealing key, or `None` when it already is (for key
    /// rotation: the plaintext never leaves this function).
    pub fn reseal(&self, context: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        let (ring, index) = self.sealing_ring()?;
        if Self::key_id_of(sealed)? == ring.keys[index].id {
            return Ok(None);
        }
        let mut plain = ring.open(context, sealed)?;
        let resealed = ring.seal(index, context, &plain);
        zeroize::Zeroize::zeroize(&mut plain);
        Ok(Some(resealed))
    }

    /// The id of the key a ciphertext was sealed with (for `tether keys rotate`).
    pub fn key_id_of(sealed: &[u8]) -> Result<&str, VaultError> {
        parse_header(sealed).map(|(id, _)| id)
    }

    /// Re-reads the key file this vault was loaded from and uses its keys from now on.
    /// Returns the key ids now in use. A vault given its keys inline has nothing to re-read.
    pub fn reload(&self) -> Result<Vec<String>, VaultError> {
        let Some(path) = &self.source else {
            return Err(VaultError::NotReloadable);
        };
        let ring = Keyring::from_spec(&read_key_file(path)?)?;
        let ids = ring.keys.iter().map(|k| k.id.clone()).collect();
        *self.ring.write().expect("vault lock poisoned") = Arc::new(ring);
        Ok(ids)
    }

    /// [`Vault::reload`], at most once per [`RELOAD_THROTTLE`]; whether it reloaded.
    fn reload_throttled(&self) -> bool {
        {
            let mut last = self.last_reload.lock().expect("vault lock poisoned");
            if last.is_some_and(|at| at.elapsed() < RELOAD_THROTTLE) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.reload() {
            Ok(ids) => {
                tracing::info!(keys = ?ids, "met a new encryption key id; reloaded the key file");
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, "re-reading the key file failed");
                false
            }
        }
    }
}

impl Keyring {
    fn from_spec(spec: &str) -> Result<Self, VaultError> {
        let mut keys: Vec<VaultKey> = Vec::new();
        let entries = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let (id, material) = entry.split_once(':').ok_or(VaultError::BadKey(index + 1))?;
            let id = id.trim();
            let bytes = STANDARD
                .decode(material.trim())
                .map_err(|_| VaultError::BadKey(index + 1))?;
            if id.is_empty() || id.len() > 64 || bytes.len() != KEY_LEN {
                return Err(VaultError::BadKey(index + 1));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::DuplicateKeyId(id.to_owned()));
            }
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| VaultError::BadKey(index + 1))?;
            keys.push(VaultKey {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(VaultError::NoKeys);
        }
        Ok(Keyring { keys })
    }

    fn seal(&self, index: usize, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.keys[index];
        let mut sealed = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + plaintext.len() + 16);
        sealed.push(FORMAT_V1);
        sealed.push(key.id.len() as u8);
        sealed.extend_from_slice(key.id.as_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        sealed.extend_from_slice(&nonce);
        let aad = associated_data(&sealed, context);
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (key_id, header_len) = parse_header(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        let nonce = &sealed[header_len - NONCE_LEN..header_len];
        let aad = associated_data(&sealed[..header_len], context);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &sealed[header_len..],
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Open)
    }
}

/// Returns the key id and the length of the header (format byte, id, nonce).
fn parse_header(sealed: &[u8]) -> Result<(&str, usize), VaultError> {
    let (&format, rest) = sealed.split_first().ok_or(VaultError::Malformed)?;
    if format != FORMAT_V1 {
        return Err(VaultError::Malformed);
    }
    let (&id_len, rest) = rest.split_first().ok_or(VaultError::Malformed)?;
    let id_len = id_len as usize;
    // The tag alone is 16 bytes, so anything shorter than header + 16 cannot be ours.
    if rest.len() < id_len + NONCE_LEN + 16 {
        return Err(VaultError::Malformed);
    }
    let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| VaultError::Malformed)?;
    Ok((key_id, 2 + id_len + NONCE_LEN))
}

fn associated_data(header: &[u8], context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context.as_bytes());
    aad
}

/// The text of a key file, refused when group or others can read it.
fn read_key_file(path: &Path) -> Result<String, VaultError> {
    check_private(path)?;
    std::fs::read_to_string(path).map_err(|source| VaultError::KeyFile {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a new key file readable by its owner only; fails when something is at `path`.
pub fn write_key_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    // `create_new`: never truncate or follow into a file that is already there (a symlink
    // planted at the path, or another process's key file); the caller decides what exists.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn check_private(path: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| VaultError::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(VaultError::KeyFileMode(path.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vault() -> Vault {
        Vault::from_spec(&Vault::generate_key_entry()).unwrap()
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2048), ctx in "[a-z0-9/_-]{1,40}") {
            let v = vault();
            let sealed = v.seal(&ctx, &plain).unwrap();
            prop_assert_eq!(v.open(&ctx, &sealed).unwrap(), plain);
        }

        #[test]
        fn another_row_fails_to_open(plain in proptest::collection::vec(any::<u8>(), 0..256), a in "[a-z0-9]{1,20}", b in "[a-z0-9]{1,20}") {
            prop_assume!(a != b);
            let v = vault();
            let sealed = v.seal(&a, &plain).unwrap();
            prop_assert!(matches!(v.open(&b, &sealed), Err(VaultError::Open)));
        }

        #[test]
        fn any_flipped_bit_fails(plain in proptest::collection::vec(any::<u8>(), 1..128), bit in 0usize..1024) {
            let v = vault();
            let mut sealed = v.seal("row", &plain).unwrap();
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(v.open("row", &sealed).is_err());
        }
    }

    #[test]
    fn rotation_opens_old_and_seals_new() {
        let old = Vault::generate_key_entry();
        let new = format!("z{}", &Vault::generate_key_entry()[1..]);
        let before = Vault::from_spec(&old).unwrap();
        let sealed = before.seal("ctx", b"secret").unwrap();
        let after = Vault::from_spec(&format!("{new},{old}")).unwrap();
        assert_eq!(after.open("ctx", &sealed).unwrap(), b"secret");
        let resealed = after.seal("ctx", b"secret").unwrap();
        assert_eq!(Vault::key_id_of(&resealed).unwrap(), after.primary_key_id());
        assert!(matches!(
            before.open("ctx", &resealed),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn rotating_the_key_file_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.keys");
        let before = Vault::load_or_create_key_file(&path).unwrap();
        let sealed = before.seal("c", b"x").unwrap();
        let after = Vault::rotate_key_file(&path).unwrap();
        assert_ne!(after.primary_key_id(), before.primary_key_id());
        assert_eq!(after.open("c", &sealed).unwrap(), b"x");
        let reloaded = Vault::load_or_create_key_file(&path).unwrap();
        assert_eq!(reloaded.primary_key_id(), after.primary_key_id());
    }

    #[test]
    fn a_running_vault_takes_a_rotated_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.keys");
        let running = Vault::load_or_create_key_file(&path).unwrap();
        let first = running.primary_key_id();
        // Another process rotates the file and seals under the new key.
        let other = Vault::rotate_key_file(&path).unwrap();
        let sealed = other.seal("c", b"secret").unwrap();
        // Meeting the unknown key id makes the running vault re-read its file.
        assert_eq!(running.open("c", &sealed).unwrap(), b"secret");
        assert_eq!(running.primary_key_id(), other.primary_key_id());
        assert_ne!(running.primary_key_id(), first);
        // An explicit reload (SIGHUP) works too; an inline keyring has nothing to re-read.
        assert_eq!(running.reload().unwrap().len(), 2);
        let inline = Vault::from_spec(&Vault::generate_key_entry()).unwrap();
        assert!(matches!(inline.reload(), Err(VaultError::NotReloadable)));
        assert!(matches!(
            inline.open("c", &sealed),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn the_key_file_is_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.keys");
        std::fs::write(&path, "not mine").unwrap();
        let err = write_key_file(&path, "k:AAAA").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not mine");
    }

    #[test]
    fn reseal_moves_only_what_is_under_an_old_key() {
        let old_entry = Vault::generate_key_entry();
        let old = Vault::from_spec(&old_entry).unwrap();
        let sealed = old.seal("row/1", b"value").unwrap();
        let spec = [Vault::generate_key_entry(), old_entry].join(",");
        let both = Vault::from_spec(&spec).unwrap();
        let resealed = both.reseal("row/1", &sealed).unwrap().expect("moved");
        assert_eq!(Vault::key_id_of(&resealed).unwrap(), both.primary_key_id());
        assert_eq!(both.open("row/1", &resealed).unwrap(), b"value");
        assert!(both.reseal("row/1", &resealed).unwrap().is_none());
        assert!(both.reseal("row/2", &sealed).is_err(), "bound to its row");
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(Vault::from_spec(""), Err(VaultError::NoKeys)));
        assert!(matches!(
            Vault::from_spec("k1:short"),
            Err(VaultError::BadKey(1))
        ));
        let e = Vault::generate_key_entry();
        assert!(matches!(
            Vault::from_spec(&format!("{e},{e}")),
            Err(VaultError::DuplicateKeyId(_))
        ));
        assert!(matches!(
            Vault::from_spec("\x01"),
            Err(VaultError::BadKey(1))
        ));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.keys");
        let first = Vault::load_or_create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal("c", b"x").unwrap();
        let again = Vault::load_or_create_key_file(&path).unwrap();
        assert_eq!(again.open("c", &sealed).unwrap(), b"x");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Vault::load_or_create_key_file(&path),
            Err(VaultError::KeyFileMode(_))
        ));
    }

    #[test]
    fn the_announced_key_seals_and_an_unheld_one_refuses() {
        let old = Vault::generate_key_entry();
        let new = format!("z{}", &Vault::generate_key_entry()[1..]);
        let new_id = new.split_once(':').unwrap().0.to_owned();
        let old_id = old.split_once(':').unwrap().0.to_owned();
        // Both keys, the new one second: until it is announced, the primary (old) seals.
        let both = Vault::from_spec(&format!("{old},{new}")).unwrap();
        assert_eq!(both.sealing_key_id().unwrap(), old_id);
        both.announce(&new_id);
        let sealed = both.seal("c", b"v").unwrap();
        assert_eq!(Vault::key_id_of(&sealed).unwrap(), new_id);
        let moved = both
            .reseal("c", &both_under(&old))
            .unwrap()
            .expect("moved to the announced key");
        assert_eq!(Vault::key_id_of(&moved).unwrap(), new_id);
        // An instance with the old key only refuses to seal, instead of sealing under it.
        let stale = Vault::from_spec(&old).unwrap();
        stale.announce(&new_id);
        assert!(matches!(
            stale.seal("c", b"v"),
            Err(VaultError::SealingKeyNotHeld(id)) if id == new_id
        ));
        assert!(stale.reseal("c", &both_under(&old)).is_err());
    }

    /// A value sealed under the single key `entry`, for the row "c".
    fn both_under(entry: &str) -> Vec<u8> {
        Vault::from_spec(entry).unwrap().seal("c", b"v").unwrap()
    }

    #[test]
    fn an_announced_key_missing_from_the_key_file_makes_it_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tether.keys");
        let running = Vault::load_or_create_key_file(&path).unwrap();
        let rotated = Vault::rotate_key_file(&path).unwrap();
        running.announce(&rotated.primary_key_id());
        let sealed = running.seal("c", b"x").unwrap();
        assert_eq!(Vault::key_id_of(&sealed).unwrap(), rotated.primary_key_id());
    }
}
