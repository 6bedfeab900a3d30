//! The DICOM network node: the storage SCP that scanners send radiographs to (`scp`), and the
//! store SCU that sends results to the clinic's PACS (`scu`), both over `dicom-ul` associations
//! speaking the few DIMSE messages in `dimse`.

pub mod dimse; // C-ECHO and C-STORE command sets; one whole message from P-DATA, size-limited
pub mod scp; // receive: C-ECHO, C-STORE → the received folder (an inbox)
pub mod scu; // send: instances to a peer by C-STORE

use serde::Serialize;

/// The SOP classes a radiograph arrives as: CR, DX for presentation and for processing, and
/// secondary capture (digitised film), single- and multi-frame greyscale.
pub const ACCEPTED_SOP_CLASSES: [&str; 6] = [
    "1.2.840.10008.5.1.4.1.1.1",     // Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1",   // Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1", // Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.7",     // Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",   // Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",   // Multi-frame Grayscale Word Secondary Capture
];

/// The transfer syntaxes received, in the order this node prefers them; all are ones the
/// decoder reads.
pub const ACCEPTED_TRANSFER_SYNTAXES: [&str; 6] = [
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.4.50", // JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.57", // JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70", // JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.5",    // RLE Lossless
];

/// This implementation's class UID and version name (file meta group, association requests).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.28423268941840777800932118803368646326";
pub const IMPLEMENTATION_VERSION: &str = concat!("KNEESCREEN_", env!("CARGO_PKG_VERSION"));

/// What the node has done, for the status view and the console.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NodeActivity {
    /// "<AE title> on port <n>" while the SCP listens.
    pub listening: Option<String>,
    /// The newest association: when, who, and how it ended.
    pub last_association: Option<String>,
    /// Instances received and kept since the start.
    pub received: u64,
    /// The newest problem with a peer.
    pub last_error: Option<String>,
}

/// A UID as a file name: digits and dots only (anything else becomes `_`), at most 64 characters.
pub fn sanitised_uid(uid: &str) -> String {
    let uid = uid.trim_end_matches(['\0', ' ']);
    let safe: String = uid
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_digit() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("uid{safe}")
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_uid_makes_a_safe_file_name() {
        assert_eq!(super::sanitised_uid("1.2.840.5\0"), "1.2.840.5");
        assert_eq!(super::sanitised_uid("../etc/passwd"), "uid..___________");
        assert_eq!(super::sanitised_uid(""), "uid");
        assert_eq!(super::sanitised_uid(&"9".repeat(200)).len(), 64);
    }
}
