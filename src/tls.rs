//! TLS certificates. The appliance's own (the web console's, and the DICOM node's when it speaks
//! DICOM over TLS): the clinic's (PEM files named in the config), or one made on the first start
//! and kept in the data folder, so its fingerprint stays the same across restarts; the SHA-256
//! fingerprint is what a technician compares with what the browser or the scanner shows. And
//! the certificates a PACS is checked against when results go to it over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Where the console's certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// The clinic's certificate (chain) and private key, as PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate in this folder, made on the first start.
    SelfSigned { dir: PathBuf },
}

/// The certificate the console serves.
pub struct Certificate {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, as browsers show it: `AB:CD:…` (32 pairs).
    pub fingerprint: String,
    /// The certificate file (for a client to trust or pin).
    pub cert_path: PathBuf,
}

/// The self-signed certificate's file names inside its folder.
pub const SELF_SIGNED_CERT: &str = "console-cert.pem";
const SELF_SIGNED_KEY: &str = "console-key.pem";

/// Names the self-signed certificate is valid for (it is checked by fingerprint, not by name).
const NAMES: [&str; 5] = [
    "kneescreen",
    "kneescreen.local",
    "localhost",
    "127.0.0.1",
    "::1",
];

/// SHA-256 of a certificate as colon-separated upper-case pairs.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// Loads the certificate (making the self-signed one when it is not there yet).
pub fn load(source: &CertificateSource) -> anyhow::Result<Certificate> {
    use anyhow::Context;
    let (cert_path, key_path) = match source {
        CertificateSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertificateSource::SelfSigned { dir } => {
            let paths = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
            if !paths.0.exists() || !paths.1.exists() {
                make_self_signed(dir, &paths.0, &paths.1).with_context(|| {
                    format!("making the console's certificate in {}", dir.display())
                })?;
            }
            paths
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| {
            anyhow::anyhow!(
                "the console's certificate {} cannot be read: {e}",
                cert_path.display()
            )
        })?;
    let first = certs.first().ok_or_else(|| {
        anyhow::anyhow!(
            "the console's certificate file {} holds no certificate",
            cert_path.display()
        )
    })?;
    let fingerprint = fingerprint(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        anyhow::anyhow!(
            "the console's private key {} cannot be read: {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "the console's certificate {} and key {} do not go together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    Ok(Certificate {
        config: Arc::new(config),
        fingerprint,
        cert_path,
    })
}

/// Makes a self-signed certificate and its key (readable by this user only).
fn make_self_signed(dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names)?;
    crate::store::atomic::write_private(key, made.key_pair.serialize_pem().as_bytes())?;
    crate::store::atomic::write_atomic(cert, made.cert.pem().as_bytes())?;
    Ok(())
}

/// A TLS client configuration that trusts the certificates in `ca_file` (PEM): the PACS's own
/// certificate, or the clinic's certificate authority.
pub fn client_config(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the certificates to trust in {} cannot be read: {e}",
            ca_file.display()
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| unreadable(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| unreadable(&e))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{} holds no certificate to trust",
        ca_file.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_32_colon_separated_pairs() {
        // SHA-256 of "abc" (FIPS 180-2 example).
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn the_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertificateSource::SelfSigned {
            dir: dir.path().join("tls"),
        };
        let first = load(&source).unwrap();
        let again = load(&source).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "kept across starts");
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let key = dir.path().join("tls").join(SELF_SIGNED_KEY);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The same files named as the clinic's own give the same certificate.
        let files = CertificateSource::Files {
            cert: first.cert_path.clone(),
            key: dir.path().join("tls").join(SELF_SIGNED_KEY),
        };
        assert_eq!(load(&files).unwrap().fingerprint, first.fingerprint);
    }

    #[test]
    fn a_missing_or_wrong_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertificateSource::Files {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let e = load(&missing).err().unwrap().to_string();
        assert!(
            e.contains("nope.pem") && e.contains("cannot be read"),
            "{e}"
        );
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let empty = CertificateSource::Files {
            cert: dir.path().join("empty.pem"),
            key: dir.path().join("nope.key"),
        };
        let e = load(&empty).err().unwrap().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
