//! Sealing refused events at rest: the quarantine keeps each request encrypted with
//! XChaCha20-Poly1305 (random 24-byte nonces, so no nonce bookkeeping) under a named key read
//! from a file. Rotation: add the new key, make it the active one, keep the old one under
//! `previous_keys` until the rows it sealed are past retention.
//!
//! Key material never reaches logs or errors; a row sealed under a key the hub no longer holds
//! is reported as such, not guessed at.

use std::collections::HashMap;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::config::QuarantineConfig;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "quarantine.key_file is required: refused events hold personal data and are kept \
         encrypted (create a key with `openssl rand -hex 32 > quarantine.key`)"
    )]
    NoKey,
    #[error("cannot read the quarantine key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the quarantine key {path} must hold 32 bytes as 64 hexadecimal characters")]
    Malformed { path: String },
    #[error("no quarantine key {0:?} is configured (quarantine.key_id / previous_keys)")]
    UnknownKey(String),
    #[error("the sealed request does not open with key {0:?}: altered, or sealed with another key")]
    Corrupt(String),
}

pub struct QuarantineKeys {
    active: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

fn associated_data(key_id: &str, context: &str) -> String {
    format!("{key_id}\n{context}")
}

fn read_key(path: &Path) -> Result<XChaCha20Poly1305, SealError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SealError::Read {
        path: shown.clone(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| SealError::Malformed {
        path: shown.clone(),
    })?;
    XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::Malformed { path: shown })
}

impl QuarantineKeys {
    pub fn load(config: &QuarantineConfig) -> Result<Self, SealError> {
        let active_file = config.key_file.as_deref().ok_or(SealError::NoKey)?;
        let mut keys = HashMap::new();
        for (id, path) in &config.previous_keys {
            keys.insert(id.clone(), read_key(path)?);
        }
        keys.insert(config.key_id.clone(), read_key(active_file)?);
        Ok(Self {
            active: config.key_id.clone(),
            keys,
        })
    }

    /// Seals `plaintext` with the active key, bound to `context` (what identifies the row in
    /// clear, so a sealed value moved to another row no longer opens); returns the key's id and
    /// nonce + ciphertext.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> (String, Vec<u8>) {
        let cipher = &self.keys[&self.active];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(&self.active, context);
        let aad = aad.as_bytes();
        // Encryption fails only for inputs beyond ChaCha20's 256 GiB limit, which a request
        // bounded by limits.max_message_bytes cannot reach.
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("a quarantined request is far below the cipher's length limit");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        (self.active.clone(), sealed)
    }

    /// Opens what [`Self::seal`] produced under key `key_id` for the same `context`.
    pub fn open(&self, key_id: &str, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Corrupt(key_id.to_owned()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data(key_id, context).as_bytes(),
                },
            )
            .map_err(|_| SealError::Corrupt(key_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn key_file(dir: &Path, name: &str, hex: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, hex).expect("written");
        path
    }

    #[test]
    fn sealed_requests_open_with_their_key_only_and_survive_rotation() {
        let dir = std::env::temp_dir().join(format!("lienthong-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let old = key_file(&dir, "old.key", &"11".repeat(32));
        let new = key_file(&dir, "new.key", &"22".repeat(32));
        let before = QuarantineKeys::load(&QuarantineConfig {
            key_file: Some(old.clone()),
            key_id: "2026-11".into(),
            ..QuarantineConfig::default()
        })
        .expect("keys");
        let (id, sealed) = before.seal(b"{\"personal_id\":\"048195001234\"}", "row 1");
        assert!(!String::from_utf8_lossy(&sealed).contains("048195001234"));

        let after = QuarantineKeys::load(&QuarantineConfig {
            key_file: Some(new),
            key_id: "2026-12".into(),
            previous_keys: BTreeMap::from([("2026-11".to_owned(), old)]),
            ..QuarantineConfig::default()
        })
        .expect("rotated keys");
        assert_eq!(
            after.open(&id, &sealed, "row 1").expect("opens"),
            b"{\"personal_id\":\"048195001234\"}"
        );
        assert_eq!(after.seal(b"x", "row 2").0, "2026-12");
        assert!(
            matches!(
                after.open(&id, &sealed, "row 2"),
                Err(SealError::Corrupt(_))
            ),
            "a sealed value moved to another row does not open"
        );

        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(matches!(
            after.open(&id, &altered, "row 1"),
            Err(SealError::Corrupt(_))
        ));
        assert!(matches!(
            after.open("2025-01", &sealed, "row 1"),
            Err(SealError::UnknownKey(_))
        ));
        let bad = key_file(&dir, "bad.key", "not hex");
        let refused = QuarantineKeys::load(&QuarantineConfig {
            key_file: Some(bad),
            ..QuarantineConfig::default()
        });
        assert!(matches!(refused, Err(SealError::Malformed { .. })));
        std::fs::remove_dir_all(&dir).expect("cleaned");
    }
}
