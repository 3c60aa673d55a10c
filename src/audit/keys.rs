//! The audit log's two secrets. The signing key (Ed25519) signs checkpoints: anyone holding
//! its public key checks them, and nobody without the private key can forge one, including
//! whoever can write the database. The subject key (HMAC-SHA256) turns a personal ID into a
//! pseudonymous reference: the ledger can be queried by citizen without holding a single
//! personal ID, and references cannot be reversed or recomputed without the key. Rotation:
//! name a new subject key, keep the old one under `previous_subject_keys`; lookups by personal
//! ID compute a reference under every key held.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::AuditConfig;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "audit.{0} is required: create one with `openssl rand -hex 32 > {1}` \
         (deploy/local/make-secrets.sh does)"
    )]
    Missing(&'static str, &'static str),
    #[error("cannot read the audit key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the audit key {path} must hold 32 bytes as 64 hexadecimal characters")]
    Malformed { path: String },
}

fn read_key(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed {
        path: shown.clone(),
    })?;
    bytes
        .try_into()
        .map_err(|_| KeyError::Malformed { path: shown })
}

/// Signs checkpoints under the deployment's origin.
pub struct Signer {
    origin: String,
    key: SigningKey,
}

impl Signer {
    pub fn load(config: &AuditConfig) -> Result<Self, KeyError> {
        let file = config
            .signing_key_file
            .as_deref()
            .ok_or(KeyError::Missing("signing_key_file", "audit-signing.key"))?;
        Ok(Self {
            origin: config.origin.clone(),
            key: SigningKey::from_bytes(&read_key(file)?),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Makes pseudonymous subject references: `key_id:` and 64 hexadecimal characters.
pub struct SubjectKeys {
    active: String,
    keys: BTreeMap<String, [u8; 32]>,
}

impl SubjectKeys {
    pub fn load(config: &AuditConfig) -> Result<Self, KeyError> {
        let file = config
            .subject_key_file
            .as_deref()
            .ok_or(KeyError::Missing("subject_key_file", "audit-subject.key"))?;
        let mut keys = BTreeMap::new();
        for (id, path) in &config.previous_subject_keys {
            keys.insert(id.clone(), read_key(path)?);
        }
        keys.insert(config.subject_key_id.clone(), read_key(file)?);
        Ok(Self {
            active: config.subject_key_id.clone(),
            keys,
        })
    }

    fn reference_with(key_id: &str, key: &[u8; 32], personal_id: &str) -> String {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(key).expect("HMAC-SHA256 takes a key of any length");
        mac.update(personal_id.as_bytes());
        format!("{key_id}:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The reference the ledger stores for `personal_id` now.
    pub fn reference(&self, personal_id: &str) -> String {
        Self::reference_with(&self.active, &self.keys[&self.active], personal_id)
    }

    /// Every reference `personal_id` may have been stored under, one per key held.
    pub fn all_references(&self, personal_id: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|(id, key)| Self::reference_with(id, key, personal_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &Path, active: &str, previous: &[&str]) -> SubjectKeys {
        let mut config = AuditConfig::default();
        let write = |name: &str| {
            let path = dir.join(format!("{name}.key"));
            std::fs::write(&path, hex::encode([name.as_bytes()[0]; 32])).expect("written");
            path
        };
        config.subject_key_file = Some(write(active));
        config.subject_key_id = active.to_owned();
        for name in previous {
            config
                .previous_subject_keys
                .insert((*name).to_owned(), write(name));
        }
        SubjectKeys::load(&config).expect("keys load")
    }

    #[test]
    fn references_hide_the_id_and_survive_rotation() {
        let dir = std::env::temp_dir().join(format!("lienthong-subject-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let before = keys(&dir, "a", &[]);
        let after = keys(&dir, "b", &["a"]);
        let old = before.reference("001203004567");
        assert!(old.starts_with("a:") && !old.contains("001203004567"));
        assert_eq!(old.len(), 2 + 64);
        assert_ne!(after.reference("001203004567"), old);
        assert!(after.all_references("001203004567").contains(&old));
        assert_ne!(before.reference("001203004568"), old);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_or_short_key_is_named() {
        let missing = SubjectKeys::load(&AuditConfig::default()).err();
        assert!(matches!(
            missing,
            Some(KeyError::Missing("subject_key_file", _))
        ));
        let dir = std::env::temp_dir().join(format!("lienthong-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("short.key");
        std::fs::write(&path, "abcd").expect("written");
        let config = AuditConfig {
            signing_key_file: Some(path),
            ..AuditConfig::default()
        };
        assert!(matches!(
            Signer::load(&config).err(),
            Some(KeyError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
