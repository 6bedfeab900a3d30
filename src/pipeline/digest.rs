//! SHA-256 as lower-case hex: the identity of inputs (journal keys, result names), model files
//! and site heads.

use sha2::{Digest, Sha256};

/// sha256 of a byte slice, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
