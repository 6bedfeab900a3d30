//! kneescreen: knee-osteoarthritis screening from a knee radiograph (Kellgren–Lawrence grade,
//! Grad-CAM). Data flows one way: `pipeline` (bytes → record) → `store` (results folder,
//! journal) → the outputs (`ui` on the panel through `hw`, `web`), driven by `appliance` or
//! `cli`. `record` is the schema they all share; it imports nothing from the crate.

pub mod appliance; // the appliance: events → pipeline → store → panel and console
pub mod calibration; // site calibration: a linear head refitted to a clinic's own graded knees
pub mod cli; // command-line arguments and commands
pub mod config; // the appliance settings (TOML + flags)
pub mod dicom_net; // the DICOM network node: storage SCP (receive), store SCU (send)
pub mod hw; // panels (virtual; SPI and framebuffer on the Pi), button events
pub mod ingest; // inbox/USB watching, complete-file detection
pub mod pacs; // results to the clinic's PACS: outbox, Structured Report, Secondary Capture
pub mod pipeline; // one image: read → decode → preprocess → model → Grad-CAM → record
pub mod record; // the JSON schema of a result
pub mod store; // results folder, atomic writes, journal
pub mod sync; // taking a lock shared between threads
pub mod tls; // certificates: the console's and the DICOM node's (TLS), and the PACS's to trust
pub mod tools; // eval, metrics, figures, bench
pub mod ui; // the panel's views, drawn on any DrawTarget
pub mod web; // the web console: pages, JSON API, panel mirror, virtual button
