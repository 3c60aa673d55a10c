//! Checkpoints: signed statements "the log's first N entries have root R", in the C2SP
//! checkpoint format on a C2SP signed note (as Go's sumdb, Sigstore and the transparency-dev
//! tools write them), so an auditor can check one with tools that are not ours:
//!
//! ```text
//! lienthong.local/audit          <- origin
//! 1042                           <- tree size
//! q4vX...=                       <- root hash, base64
//! signed-at 2026-12-06T16:20:00Z <- extension line
//!
//! — lienthong.local/audit AbCd...= <- key name, base64(key hash || Ed25519 signature)
//! ```
//!
//! The public key is published as a verifier key, `origin+keyhash+base64(0x01 || key)`
//! (`lienthong audit key`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::keys::Signer;
use super::merkle::Hash;

/// The signature algorithm byte of an Ed25519 key in a signed note.
const ED25519: u8 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the verifier key must read name+keyhash+base64key (`lienthong audit key` prints it)")]
    BadKey,
    #[error("the checkpoint is not a signed note: {0}")]
    Malformed(&'static str),
    #[error("the checkpoint is not signed by {0}")]
    NotSigned(String),
    #[error("the checkpoint's signature by {0} does not verify: it was altered or forged")]
    BadSignature(String),
    #[error("the checkpoint's origin is {found:?}, the key's is {expected:?}")]
    OtherOrigin { expected: String, found: String },
}

/// What a checkpoint states, once its signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub signed_at: Option<DateTime<Utc>>,
}

fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519])
        .chain_update(key.as_bytes())
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The verifier key auditors are given: `name+hex key hash+base64(0x01 || public key)`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut encoded = vec![ED25519];
    encoded.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, key)),
        BASE64.encode(encoded)
    )
}

/// A verifier key, parsed.
pub struct Verifier {
    name: String,
    hash: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey);
        };
        let hash: [u8; 4] = hex::decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(NoteError::BadKey)?;
        let key = BASE64.decode(key).map_err(|_| NoteError::BadKey)?;
        let key = match key.split_first() {
            Some((&ED25519, bytes)) => <[u8; 32]>::try_from(bytes)
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or(NoteError::BadKey)?,
            _ => return Err(NoteError::BadKey),
        };
        if name.is_empty() || key_hash(name, &key) != hash {
            return Err(NoteError::BadKey);
        }
        Ok(Self {
            name: name.to_owned(),
            hash,
            key,
        })
    }

    pub fn of(signer: &Signer) -> Self {
        let key = signer.public();
        Self {
            name: signer.origin().to_owned(),
            hash: key_hash(signer.origin(), &key),
            key,
        }
    }

    /// Checks `note`'s signature by this key and reads the checkpoint it carries.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let text = self.verified(note)?;
        let checkpoint = parse_body(&text)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::OtherOrigin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }

    /// The text of a signed note whose signature by this key verifies (any note, not only a
    /// checkpoint).
    fn verified(&self, note: &str) -> Result<String, NoteError> {
        let (text, signatures) = note
            .split_once("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = format!("{text}\n");
        let mut found = false;
        for line in signatures.lines() {
            let Some((name, signature)) = line
                .strip_prefix("\u{2014} ")
                .and_then(|rest| rest.split_once(' '))
            else {
                return Err(NoteError::Malformed(
                    "a signature line is not '— name signature'",
                ));
            };
            if name != self.name {
                continue;
            }
            let bytes = BASE64
                .decode(signature)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if bytes.len() != 4 + 64 || bytes[..4] != self.hash {
                continue;
            }
            let signature = Signature::from_slice(&bytes[4..])
                .map_err(|_| NoteError::Malformed("a signature has the wrong length"))?;
            self.key
                .verify(text.as_bytes(), &signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            found = true;
        }
        if !found {
            return Err(NoteError::NotSigned(self.name.clone()));
        }
        Ok(text)
    }
}

/// The keys a deployment's checkpoints may be signed with: the signing key's, and those of
/// keys rotated out (`audit.previous_verifier_keys`).
pub struct Verifiers(Vec<Verifier>);

impl Verifiers {
    /// The current key first.
    pub fn new(verifiers: Vec<Verifier>) -> Self {
        Self(verifiers)
    }

    /// The hub's own: `signer`'s key and the rotated ones `previous` names.
    pub fn of(signer: &Signer, previous: &[String]) -> Result<Self, NoteError> {
        let mut all = vec![Verifier::of(signer)];
        for key in previous {
            all.push(Verifier::parse(key)?);
        }
        Ok(Self(all))
    }

    /// Opens `note` with whichever key signed it; otherwise the current key's refusal.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let mut first_refusal = None;
        for verifier in &self.0 {
            match verifier.open(note) {
                Ok(checkpoint) => return Ok(checkpoint),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        Err(first_refusal.unwrap_or(NoteError::Malformed("no verifier key is configured")))
    }
}

fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or(NoteError::Malformed("no origin line"))?;
    let tree_size = lines
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(NoteError::Malformed("no tree size line"))?;
    let root = lines
        .next()
        .and_then(|r| BASE64.decode(r).ok())
        .and_then(|r| r.try_into().ok())
        .ok_or(NoteError::Malformed("no root hash line"))?;
    let signed_at = lines
        .filter_map(|line| line.strip_prefix("signed-at "))
        .find_map(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc));
    Ok(Checkpoint {
        origin: origin.to_owned(),
        tree_size,
        root,
        signed_at,
    })
}

/// The root a note states, read without checking its signature: for the signer checking its
/// own work, never for an outside party's.
pub fn body_root(note: &str) -> Option<Hash> {
    let (text, _) = note.split_once("\n\n")?;
    parse_body(&format!("{text}\n")).ok().map(|c| c.root)
}

/// Writes and signs the note for a tree of `tree_size` entries with `root`.
pub fn sign(signer: &Signer, tree_size: u64, root: &Hash, at: DateTime<Utc>) -> String {
    let text = format!(
        "{}\n{tree_size}\n{}\nsigned-at {}\n",
        signer.origin(),
        BASE64.encode(root),
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    sign_note(signer, &text)
}

/// Signs `text` (lines, each ended by a newline) as a C2SP signed note under the signer's
/// origin.
fn sign_note(signer: &Signer, text: &str) -> String {
    let mut signature = key_hash(signer.origin(), &signer.public()).to_vec();
    signature.extend_from_slice(&signer.sign(text.as_bytes()));
    format!(
        "{text}\n\u{2014} {} {}\n",
        signer.origin(),
        BASE64.encode(signature)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;

    fn test_signer(name: &str, seed: u8) -> Signer {
        let path = std::env::temp_dir().join(format!(
            "lienthong-signer-{}-{seed}.key",
            std::process::id()
        ));
        std::fs::write(&path, hex::encode([seed; 32])).expect("written");
        let signer = Signer::load(&AuditConfig {
            signing_key_file: Some(path.clone()),
            origin: name.to_owned(),
            ..AuditConfig::default()
        })
        .expect("signer");
        std::fs::remove_file(path).ok();
        signer
    }

    /// The reference implementation's example (golang.org/x/mod/sumdb/note, repeated in
    /// C2SP implementations' test suites): the same key must give the same verifier key and,
    /// Ed25519 being deterministic, the same signed note byte for byte, and its note must open
    /// with our verifier. Any tool of that ecosystem then reads the hub's checkpoints.
    #[test]
    fn the_go_reference_note_is_signed_and_opened_byte_for_byte() {
        const VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        const PRIVATE: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                            then you don't know what your problem is.\n";
        const NOTE: &str = "If you think cryptography is the answer to your problem,\n\
            then you don't know what your problem is.\n\n\u{2014} PeterNeumann \
            x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let private = BASE64.decode(PRIVATE).expect("base64");
        assert_eq!(private[0], ED25519);
        let path = std::env::temp_dir().join(format!("lienthong-peter-{}.key", std::process::id()));
        std::fs::write(&path, hex::encode(&private[1..])).expect("written");
        let signer = Signer::load(&AuditConfig {
            signing_key_file: Some(path.clone()),
            origin: "PeterNeumann".to_owned(),
            ..AuditConfig::default()
        })
        .expect("signer");
        std::fs::remove_file(path).ok();
        assert_eq!(verifier_key(signer.origin(), &signer.public()), VERIFIER);
        assert_eq!(sign_note(&signer, TEXT), NOTE);
        let verifier = Verifier::parse(VERIFIER).expect("parses");
        assert_eq!(verifier.verified(NOTE).as_deref(), Ok(TEXT));
        assert_eq!(
            verifier.verified(&NOTE.replace("answer", "Answer")),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_published_key_only() {
        let signer = test_signer("example.gov.vn/audit", 7);
        let at = DateTime::parse_from_rfc3339("2026-12-06T16:20:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let note = sign(&signer, 42, &[9; 32], at);
        let verifier =
            Verifier::parse(&verifier_key(signer.origin(), &signer.public())).expect("key parses");
        let opened = verifier.open(&note).expect("verifies");
        assert_eq!(opened.tree_size, 42);
        assert_eq!(opened.root, [9; 32]);
        assert_eq!(opened.signed_at, Some(at));

        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verifier.open(&altered),
            Err(NoteError::BadSignature("example.gov.vn/audit".into()))
        );
        let other = test_signer("example.gov.vn/audit", 8);
        let stranger = Verifier::of(&other);
        assert_eq!(
            stranger.open(&note),
            Err(NoteError::NotSigned("example.gov.vn/audit".into()))
        );
        assert!(Verifier::parse("example+00000000+AQ==").is_err());

        // After a rotation, the old key still opens what it signed.
        let rotated = Verifiers::of(&other, &[verifier_key(signer.origin(), &signer.public())])
            .expect("previous key parses");
        assert_eq!(rotated.open(&note).map(|c| c.tree_size), Ok(42));
        let only_new = Verifiers::of(&other, &[]).expect("no previous key");
        assert!(only_new.open(&note).is_err());
    }
}
