//! Secrets at rest: the signing secrets of webhooks, push workers and callbacks, and any
//! credential a tenant gives, are stored sealed with XChaCha20-Poly1305 under a key the
//! database does not hold, so a dump of the database alone reveals none of them.
//!
//! A sealed value reads `rlsenc:v1:<key id>:<base64 of nonce and ciphertext>`. The key id
//! (the first bytes of the key's SHA-256) says which key opens it, so keys can be rotated:
//! the new key becomes current, the old ones stay listed as previous until every value is
//! sealed again with the new one (which the store does at start). Each value is bound to
//! where it is stored (for example `webhooks:<id>`), so a sealed secret copied into
//! another row does not open there.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const PREFIX: &str = "rlsenc:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error(
        "a secret key is {KEY_BYTES} bytes, written in base64 (`openssl rand -base64 32`): {0}"
    )]
    Malformed(String),
    #[error("previous secret key {position} (counting from 1): {error}")]
    Previous {
        position: usize,
        error: Box<SecretKeyError>,
    },
    #[error("the secret key file {path}: {error}")]
    File { path: String, error: std::io::Error },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with key {0}, which is neither the current secret key nor a previous one")]
    UnknownKey(String),
    #[error("the sealed value is damaged, or was moved from where it was sealed")]
    Damaged,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Key {
            id: hex::encode(&digest[..4]),
            cipher: XChaCha20Poly1305::new_from_slice(bytes).expect("32-byte key"),
        }
    }

    fn parse(text: &str) -> Result<Self, SecretKeyError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SecretKeyError::Malformed(e.to_string()))?;
        if bytes.len() != KEY_BYTES {
            return Err(SecretKeyError::Malformed(format!(
                "this one is {} bytes",
                bytes.len()
            )));
        }
        Ok(Self::new(&bytes))
    }
}

/// The key that seals, and the previous keys that still open what they sealed.
pub struct SecretKeys {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SecretKeys {
    /// From base64 keys: the current one and any previous ones.
    pub fn from_base64(current: &str, previous: &[String]) -> Result<Self, SecretKeyError> {
        Ok(SecretKeys {
            current: Key::parse(current)?,
            previous: previous
                .iter()
                .filter(|k| !k.trim().is_empty())
                .enumerate()
                .map(|(i, k)| {
                    Key::parse(k).map_err(|error| SecretKeyError::Previous {
                        position: i + 1,
                        error: Box::new(error),
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// The key kept in `path`, created there (readable by its owner only) with a fresh
    /// random key when the file does not exist yet.
    pub fn from_file(path: &Path, previous: &[String]) -> Result<Self, SecretKeyError> {
        let file_error = |error| SecretKeyError::File {
            path: path.display().to_string(),
            error,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = Self::generate();
                match create_private(path, &text) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "generated a secret key for secrets at rest; keep this file safe, and apart from the database's backups");
                        text
                    }
                    // Another process starting at the same time (a `relais serve` and a
                    // command beside it) created it first: theirs is the key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read_to_string(path).map_err(file_error)?
                    }
                    Err(e) => return Err(file_error(e)),
                }
            }
            Err(e) => return Err(file_error(e)),
        };
        Self::from_base64(&text, previous)
    }

    /// A fresh random key, in base64.
    pub fn generate() -> String {
        B64.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// The id of the key that seals: what `rlsenc:v1:<id>:` values name.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// How every value sealed under the current key begins: what needs no resealing.
    pub fn current_prefix(&self) -> String {
        format!("{PREFIX}{}:", self.current.id)
    }

    /// Seals `plain`, bound to `place` (the table and row it is stored in).
    pub fn seal(&self, plain: &str, place: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: place.as_bytes(),
                },
            )
            .expect("encryption of a string cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}:{}", self.current.id, B64.encode(bytes))
    }

    /// Opens a value stored at `place`. A value that was never sealed (stored before
    /// secrets were sealed) is returned as it is.
    pub fn open(&self, stored: &str, place: &str) -> Result<String, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once(':').ok_or(OpenError::Damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let bytes = B64.decode(body).map_err(|_| OpenError::Damaged)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(plain).map_err(|_| OpenError::Damaged)
    }

    /// Whether a stored value must be sealed again: never sealed, or sealed with a key
    /// that is no longer the current one.
    pub fn needs_resealing(&self, stored: &str) -> bool {
        match stored.strip_prefix(PREFIX) {
            None => true,
            Some(rest) => !rest.starts_with(&format!("{}:", self.current.id)),
        }
    }
}

/// Creates `path` holding `text`, readable by its owner only, unless it exists already
/// (`AlreadyExists`). Written apart and linked into place, so that nobody ever reads the
/// file half written.
fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Created readable by its owner only (0600 on Unix).
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SecretKeys {
        SecretKeys::from_base64(&SecretKeys::generate(), &[]).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_where_it_was_sealed() {
        let keys = keys();
        let sealed = keys.seal("whsec_abc", "webhooks:1");
        assert!(sealed.starts_with("rlsenc:v1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(keys.open(&sealed, "webhooks:1").unwrap(), "whsec_abc");
        assert_eq!(keys.open(&sealed, "webhooks:2"), Err(OpenError::Damaged));
        assert_ne!(sealed, keys.seal("whsec_abc", "webhooks:1"), "fresh nonce");
    }

    #[test]
    fn values_stored_before_sealing_read_as_they_are() {
        let keys = keys();
        assert_eq!(keys.open("whsec_plain", "x").unwrap(), "whsec_plain");
        assert!(keys.needs_resealing("whsec_plain"));
        assert!(!keys.needs_resealing(&keys.seal("s", "x")));
        assert!(keys.seal("s", "x").starts_with(&keys.current_prefix()));
    }

    #[test]
    fn a_rotated_key_still_opens_what_the_previous_one_sealed() {
        let old = SecretKeys::generate();
        let new = SecretKeys::generate();
        let before = SecretKeys::from_base64(&old, &[]).unwrap();
        let sealed = before.seal("s", "x");
        let after = SecretKeys::from_base64(&new, &[old]).unwrap();
        assert_eq!(after.open(&sealed, "x").unwrap(), "s");
        assert!(after.needs_resealing(&sealed));
        let without = SecretKeys::from_base64(&new, &[]).unwrap();
        assert!(matches!(
            without.open(&sealed, "x"),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn damaged_values_and_bad_keys_are_refused() {
        let keys = keys();
        let sealed = keys.seal("s", "x");
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('A');
        assert!(keys.open(&damaged, "x").is_err());
        assert!(keys.open("rlsenc:v1:nokey", "x").is_err());
        assert!(SecretKeys::from_base64("c2hvcnQ=", &[]).is_err());
        assert!(SecretKeys::from_base64("not base64!", &[]).is_err());
        let previous = SecretKeys::from_base64(
            &SecretKeys::generate(),
            &[SecretKeys::generate(), "c2hvcnQ=".into()],
        );
        assert!(matches!(
            previous,
            Err(SecretKeyError::Previous { position: 2, .. })
        ));
    }

    #[test]
    fn a_key_file_is_created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relais.key");
        let first = SecretKeys::from_file(&path, &[]).unwrap();
        let second = SecretKeys::from_file(&path, &[]).unwrap();
        assert_eq!(first.current_id(), second.current_id());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left beside it"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn processes_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relais.key");
        let ids: Vec<String> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        SecretKeys::from_file(&path, &[])
                            .unwrap()
                            .current_id()
                            .to_owned()
                    })
                })
                .collect();
            starts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    }
}
