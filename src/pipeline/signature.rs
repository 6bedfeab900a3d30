//! Who made a model: Ed25519 signatures beside the files they cover (`<file>.sig`). The models
//! folder's `card.json` is signed with the project's release key, whose verifying key is compiled
//! in (the card holds the SHA-256 of every model file, which loading checks, so the signature
//! covers them too). Site heads made by `calibrate` are signed with this device's own key, made
//! on first use and kept beside them. A file without a valid signature of a trusted key is not
//! loaded.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::pipeline::digest::hex;

/// What follows a signed file's name in its signature's.
pub const SIG_SUFFIX: &str = ".sig";

/// The project's release key (the private half is kept outside the repository; `scripts/sign-models.sh`).
const PROJECT_KEY: (&str, &str) = (
    "kneescreen project release key",
    "861dcadee96a9ecb1c524380165af96bfeb7f55e5502cf643a889ab9bac311b1",
);
/// The test key (its private half is `tests/fixtures/test-signing-key.pk8`): trusted by debug
/// builds only, so the tests can sign the models folders they change. Release builds never
/// trust it.
#[cfg(debug_assertions)]
const TEST_KEY: (&str, &str) = (
    "kneescreen test key (debug builds only)",
    "f8b4e99d4ef9882602ba82ebb245a5e15303d02cf18c9baca999fb7d7d4e489c",
);

/// A key whose signatures are believed, and the name it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    pub public: Vec<u8>,
}

impl TrustedKey {
    pub fn new(name: &str, public: &[u8]) -> TrustedKey {
        TrustedKey {
            name: name.to_string(),
            public: public.to_vec(),
        }
    }
}

/// The keys compiled into this binary for models folders.
pub fn project_keys() -> Vec<TrustedKey> {
    #[cfg_attr(not(debug_assertions), allow(unused_mut))]
    let mut keys = vec![PROJECT_KEY];
    #[cfg(debug_assertions)]
    keys.push(TEST_KEY);
    keys.into_iter()
        .filter_map(|(name, hex)| Some(TrustedKey::new(name, &from_hex(hex)?)))
        .collect()
}

/// The signature file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignatureFile {
    /// Who signed, in words.
    signer: String,
    /// The verifying key, hex.
    key: String,
    /// The Ed25519 signature of the file's bytes, hex.
    signature: String,
}

/// Who signed a file: the trusted key's name and the start of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub name: String,
    pub key_id: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (key {})", self.name, self.key_id)
    }
}

/// Why a file's signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{0} is not signed ({0}{SIG_SUFFIX} is missing): it may be a copy that was changed or not made by the project; install a signed release")]
    Missing(PathBuf),
    #[error("the signature of {0} cannot be read: {1}")]
    Malformed(PathBuf, String),
    #[error("{path} is signed by a key this device does not trust (key {key_id}); install a release signed by the kneescreen project")]
    UnknownKey { path: PathBuf, key_id: String },
    #[error("{0} does not match its signature: it was changed after signing, or copied only in part; install the release again")]
    Mismatch(PathBuf),
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, io::Error),
}

fn sig_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(SIG_SUFFIX);
    path.with_file_name(name)
}

pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks `path` against `path.sig` and the `trusted` keys; returns who signed it.
pub fn verify_file(path: &Path, trusted: &[TrustedKey]) -> Result<Signer, SignatureError> {
    let bytes = fs::read(path).map_err(|e| SignatureError::Io(path.to_path_buf(), e))?;
    verify(path, &bytes, trusted)
}

/// Checks `bytes` (the content of `path`) against `path.sig` and the `trusted` keys.
pub fn verify(path: &Path, bytes: &[u8], trusted: &[TrustedKey]) -> Result<Signer, SignatureError> {
    let sig = sig_path(path);
    let text = match fs::read_to_string(&sig) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(SignatureError::Io(sig, e)),
    };
    let file: SignatureFile = serde_json::from_str(&text)
        .map_err(|e| SignatureError::Malformed(sig.clone(), e.to_string()))?;
    let (Some(key), Some(signature)) = (from_hex(&file.key), from_hex(&file.signature)) else {
        return Err(SignatureError::Malformed(sig, "not hex".into()));
    };
    let key_id: String = file.key.chars().take(16).collect();
    let Some(known) = trusted.iter().find(|k| k.public == key) else {
        return Err(SignatureError::UnknownKey {
            path: path.to_path_buf(),
            key_id,
        });
    };
    UnparsedPublicKey::new(&ED25519, &known.public)
        .verify(bytes, &signature)
        .map_err(|_| SignatureError::Mismatch(path.to_path_buf()))?;
    Ok(Signer {
        name: known.name.clone(),
        key_id,
    })
}

/// A private signing key (PKCS#8, as a file readable by its owner only).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pub name: String,
}

impl SigningKey {
    /// Reads a key file made by `create`.
    pub fn load(path: &Path, name: &str) -> io::Result<SigningKey> {
        let bytes = fs::read(path)?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an Ed25519 key: {e}", path.display()),
            )
        })?;
        Ok(SigningKey {
            pair,
            name: name.to_string(),
        })
    }

    /// Makes a new key and writes it to `path` (created readable by its owner only; never
    /// replaces an existing file).
    pub fn create(path: &Path, name: &str) -> io::Result<SigningKey> {
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already: a key is never replaced", path.display()),
            ));
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| io::Error::other("no random numbers for a new key"))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        crate::store::atomic::write_private(path, pkcs8.as_ref())?;
        SigningKey::load(path, name)
    }

    /// The verifying half.
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey::new(&self.name, self.pair.public_key().as_ref())
    }

    /// Signs `bytes` as the content of `path`: writes `path.sig`.
    pub fn sign(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = SignatureFile {
            signer: self.name.clone(),
            key: hex(self.pair.public_key().as_ref()),
            signature: hex(self.pair.sign(bytes).as_ref()),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
        crate::store::atomic::write_atomic(&sig_path(path), &text)
    }

    /// Signs the file at `path` as it is now.
    pub fn sign_file(&self, path: &Path) -> io::Result<()> {
        self.sign(path, &fs::read(path)?)
    }
}

/// This device's key for the site heads it makes: `device-key.pk8` in the site heads' folder,
/// made on first use.
pub fn device_key(site_heads_dir: &Path) -> io::Result<SigningKey> {
    let path = site_heads_dir.join(DEVICE_KEY_FILE);
    match SigningKey::load(&path, DEVICE_KEY_NAME) {
        Ok(k) => Ok(k),
        Err(e) if e.kind() == io::ErrorKind::NotFound => SigningKey::create(&path, DEVICE_KEY_NAME),
        Err(e) => Err(e),
    }
}

/// The device key's file name in the site heads' folder, and its name in records.
pub const DEVICE_KEY_FILE: &str = "device-key.pk8";
pub const DEVICE_KEY_NAME: &str = "this device's calibration key";

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, test 2: the public key, the one-byte message 0x72 and its signature.
    #[test]
    fn an_rfc_8032_signature_verifies_and_a_changed_one_does_not() {
        let public =
            from_hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c").unwrap();
        let signature = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        fs::write(&path, [0x72u8]).unwrap();
        let sig = |signature: &str| {
            let file = SignatureFile {
                signer: "rfc".into(),
                key: hex(&public),
                signature: signature.into(),
            };
            fs::write(sig_path(&path), serde_json::to_vec(&file).unwrap()).unwrap();
        };
        let trusted = [TrustedKey::new("RFC 8032 test 2", &public)];
        sig(signature);
        let signer = verify_file(&path, &trusted).unwrap();
        assert_eq!(signer.to_string(), "RFC 8032 test 2 (key 3d4017c3e843895a)");
        sig(&signature.replace("92a0", "92a1"));
        assert!(matches!(
            verify_file(&path, &trusted),
            Err(SignatureError::Mismatch(_))
        ));
        sig(signature);
        fs::write(&path, [0x73u8]).unwrap();
        assert!(matches!(
            verify_file(&path, &trusted),
            Err(SignatureError::Mismatch(_))
        ));
        assert!(matches!(
            verify_file(&path, &[]),
            Err(SignatureError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_new_key_signs_and_only_its_own_files_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key = device_key(dir.path()).unwrap();
        let again = device_key(dir.path()).unwrap();
        assert_eq!(key.trusted(), again.trusted(), "made once, then kept");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(DEVICE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = dir.path().join("head.json");
        fs::write(&path, b"{}").unwrap();
        assert!(matches!(
            verify_file(&path, &[key.trusted()]),
            Err(SignatureError::Missing(_))
        ));
        key.sign_file(&path).unwrap();
        assert!(verify_file(&path, &[key.trusted()]).is_ok());
        let other = SigningKey::create(&dir.path().join("other.pk8"), "other").unwrap();
        assert!(matches!(
            verify_file(&path, &[other.trusted()]),
            Err(SignatureError::UnknownKey { .. })
        ));
    }

    #[test]
    fn the_compiled_in_keys_are_well_formed() {
        for key in project_keys() {
            assert_eq!(key.public.len(), 32, "{}", key.name);
        }
        assert!(!project_keys().is_empty());
    }
}
