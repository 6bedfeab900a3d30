//! The appliance's settings: one TOML file (every field has a default, unknown keys are an
//! error), then command-line flags on top, validated into a `Config` the app can trust.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hw::PanelConfig;

/// Where the config file is looked for when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/kneescreen/kneescreen.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {0}: {1}")]
    Unreadable(PathBuf, std::io::Error),
    #[error("the config file {0} is not valid: {1}")]
    Invalid(PathBuf, String),
    #[error("{0}")]
    Inconsistent(String),
}

/// The settings as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folders the scanner or a technician drops X-rays into (created if missing).
    pub inboxes: Vec<PathBuf>,
    /// Where USB sticks get mounted (each stick is a sub-folder); none to ignore USB.
    pub usb_mount_parent: Option<PathBuf>,
    /// Where results, the journal and the panel mirror go. Never inside an inbox or under the USB parent.
    pub results: PathBuf,
    /// A file whose size has not changed for this long counts as complete.
    pub settle_ms: u64,
    /// Largest input file accepted.
    pub max_file_mb: u64,
    /// `int8`, `fp32`, `int8-arm` (made for aarch64), `fp16` (CPUs with half-precision arithmetic)
    /// or a path to an ONNX file.
    pub model: String,
    /// Folder with card.json and the model files (default: found next to the binary).
    pub models_dir: Option<PathBuf>,
    /// What `kneescreen bench --choose` measured when it set `model` (none: never run).
    pub model_choice: Option<ModelChoice>,
    /// Threads for one image's network passes (the image and its mirror run at once with two or
    /// more); default: the number of cores.
    pub inference_threads: Option<usize>,
    /// The sensitivity the OA call is set for: OA is called when P(KL ≥ 2) reaches the threshold
    /// that gave this sensitivity on the model's selection slice (or a site head's
    /// cross-validation). Higher misses fewer OA knees and calls more healthy ones OA.
    pub oa_target_sensitivity: f64,
    pub panel: PanelConfig,
    pub button: ButtonConfig,
    pub web: WebSettings,
    /// The DICOM node that scanners send images to (off unless `listen` is set).
    pub dicom: DicomSettings,
    /// The clinic's PACS that results are sent to (off unless `host` is set).
    pub pacs: PacsConfig,
    /// Show the patient's name, ID and birth date from DICOM files on the panel and the web
    /// console. Off by default; even when on, they are never written to results or logs.
    pub show_patient_identity: bool,
}

impl Default for Config {
    fn default() -> Self {
        let data = PathBuf::from("kneescreen-data");
        Config {
            inboxes: vec![data.join("inbox")],
            usb_mount_parent: Some(PathBuf::from("/media")).filter(|p| p.is_dir()),
            results: data.join("results"),
            settle_ms: 1000,
            max_file_mb: 64,
            model: "int8".into(),
            models_dir: None,
            model_choice: None,
            inference_threads: None,
            oa_target_sensitivity: crate::pipeline::screening::DEFAULT_TARGET_SENSITIVITY,
            panel: PanelConfig::default(),
            button: ButtonConfig::default(),
            web: WebSettings::default(),
            dicom: DicomSettings::default(),
            pacs: PacsConfig::default(),
            show_patient_identity: false,
        }
    }
}

/// The measurement behind the configured model, written by `kneescreen bench --choose`: the
/// fastest variant that grades as fp32 does, on this device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    /// The variant chosen (what `model` was set to).
    pub variant: String,
    /// When it was measured (RFC 3339, UTC).
    pub measured: String,
    /// Threads one image's passes ran on.
    pub threads: usize,
    /// One whole analysis per variant that was measured, median wall time in ms.
    pub image_ms: std::collections::BTreeMap<String, f64>,
}

impl ModelChoice {
    /// In words for the status view, when the configured model is still the one chosen.
    pub fn describe(&self, model: &str) -> Option<String> {
        let ms = self.image_ms.get(&self.variant)?;
        let day = self.measured.get(..10).unwrap_or(&self.measured);
        (self.variant == model).then(|| format!("fastest here, {ms:.0} ms per image (bench {day})"))
    }
}

/// Sets `model` to the chosen variant in the config file at `path` (created when missing) and
/// records the measurement under `[model_choice]`, keeping the rest of the file as written. The
/// result must still be a valid config, else the file is left as it was.
pub fn record_model_choice(path: &Path, choice: &ModelChoice) -> Result<(), ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ConfigError::Unreadable(path.to_path_buf(), e)),
    };
    let invalid = |msg: String| ConfigError::Invalid(path.to_path_buf(), msg);
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| invalid(format!("{e}")))?;
    // The new value keeps the old one's spacing and comment.
    let mut model = toml_edit::Value::from(choice.variant.as_str());
    if let Some(old) = doc.get("model").and_then(toml_edit::Item::as_value) {
        *model.decor_mut() = old.decor().clone();
    }
    doc["model"] = toml_edit::Item::Value(model);
    let mut image_ms = toml_edit::InlineTable::new();
    for (variant, ms) in &choice.image_ms {
        image_ms.insert(variant, ((ms * 10.0).round() / 10.0).into());
    }
    let mut table = toml_edit::Table::new();
    table["variant"] = toml_edit::value(choice.variant.as_str());
    table["measured"] = toml_edit::value(choice.measured.as_str());
    table["threads"] = toml_edit::value(choice.threads as i64);
    table["image_ms"] = toml_edit::value(image_ms);
    doc["model_choice"] = toml_edit::Item::Table(table);
    let updated = doc.to_string();
    Config::parse(&updated).map_err(|e| invalid(e.to_string()))?;
    crate::store::atomic::write_atomic(path, updated.as_bytes())
        .map_err(|e| ConfigError::Unreadable(path.to_path_buf(), e))
}

/// The push-button (GPIO) settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ButtonConfig {
    /// GPIO line name (e.g. "GPIO17"); none on a laptop (keyboard and web button instead).
    pub line: Option<String>,
    pub long_press_ms: u64,
    pub debounce_ms: u64,
}

impl Default for ButtonConfig {
    fn default() -> Self {
        ButtonConfig {
            line: None,
            long_press_ms: 800,
            debounce_ms: 30,
        }
    }
}

/// The web console settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Access token / PIN; required when `listen` is not a loopback address.
    pub token: Option<String>,
    pub max_upload_mb: u64,
    /// The clinic's certificate (PEM, chain first) and its private key for the console's TLS;
    /// without them a self-signed certificate is made on the first start and kept in
    /// `<data folder>/console-tls/` (the folder holding `results`). TLS is used whenever the
    /// console listens beyond this machine; on loopback it speaks plain HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_upload_mb: 50,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The DICOM node (storage SCP) settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomSettings {
    /// Address to receive images on, e.g. "0.0.0.0:11112"; none: no DICOM node.
    pub listen: Option<SocketAddr>,
    /// This node's AE title: scanners call it, and results are sent under it.
    pub ae_title: String,
    /// Calling AE titles allowed to send; empty: any.
    pub allowed_calling_ae_titles: Vec<String>,
    /// Where received images are kept; watched like an inbox. Never inside the results folder.
    pub received: PathBuf,
    /// Speak DICOM over TLS (the digitiser must be set up for it), with the appliance's
    /// certificate (the console's: `web.tls_cert`, or the self-signed one).
    pub tls: bool,
}

impl Default for DicomSettings {
    fn default() -> Self {
        DicomSettings {
            listen: None,
            ae_title: "KNEESCREEN".into(),
            allowed_calling_ae_titles: Vec::new(),
            received: PathBuf::from("kneescreen-data/received"),
            tls: false,
        }
    }
}

/// The PACS that results (a Structured Report and the heatmap pictures) are sent to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacsConfig {
    /// The PACS's AE title, host and port; results are sent when `host` is set.
    pub ae_title: String,
    pub host: Option<String>,
    pub port: u16,
    /// The first wait after a failed send, doubling with each failure up to `retry_max_s`.
    pub retry_min_s: u64,
    pub retry_max_s: u64,
    /// Send over DICOM TLS, checking the PACS's certificate against `ca_cert`.
    pub tls: bool,
    /// The PACS's certificate, or the clinic's certificate authority (PEM).
    pub ca_cert: Option<PathBuf>,
}

impl Default for PacsConfig {
    fn default() -> Self {
        PacsConfig {
            ae_title: "ORTHANC".into(),
            host: None,
            port: 4242,
            retry_min_s: 30,
            retry_max_s: 900,
            tls: false,
            ca_cert: None,
        }
    }
}

impl PacsConfig {
    /// The PACS as a peer, when one is configured.
    pub fn peer(&self) -> Option<crate::dicom_net::scu::Peer> {
        Some(crate::dicom_net::scu::Peer {
            ae_title: self.ae_title.clone(),
            host: self.host.clone()?,
            port: self.port,
        })
    }
}

/// Command-line flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub inboxes: Vec<PathBuf>,
    pub results: Option<PathBuf>,
    pub panel: Option<crate::hw::PanelKind>,
    pub listen: Option<SocketAddr>,
    pub model: Option<String>,
    pub models_dir: Option<PathBuf>,
    pub usb_mount_parent: Option<PathBuf>,
    pub dicom_listen: Option<SocketAddr>,
    pub ae_title: Option<String>,
    /// `AE_TITLE@HOST:PORT`.
    pub pacs: Option<String>,
}

impl Config {
    /// Where the appliance's certificate (the console's, and the DICOM node's over TLS) comes
    /// from: the configured files, or the self-signed one kept beside the results folder.
    pub fn certificate_source(&self) -> crate::tls::CertificateSource {
        match (&self.web.tls_cert, &self.web.tls_key) {
            (Some(cert), Some(key)) => crate::tls::CertificateSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => {
                let data = self.results.parent().filter(|p| !p.as_os_str().is_empty());
                crate::tls::CertificateSource::SelfSigned {
                    dir: data.unwrap_or(Path::new(".")).join("console-tls"),
                }
            }
        }
    }

    /// The folders watched as inboxes: the configured ones, and the DICOM node's received folder
    /// when it listens.
    pub fn watched_inboxes(&self) -> Vec<PathBuf> {
        let received = self.dicom.listen.map(|_| self.dicom.received.clone());
        self.inboxes.iter().cloned().chain(received).collect()
    }

    /// Reads `path`, or the system config when it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(SYSTEM_CONFIG).is_file() => PathBuf::from(SYSTEM_CONFIG),
            None => return Ok(Config::default()),
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| ConfigError::Unreadable(path.clone(), e))?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Invalid(_, msg) => ConfigError::Invalid(path, msg),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid(PathBuf::new(), e.to_string()))
    }

    /// Applies the flags and checks that the settings make sense together.
    pub fn with_overrides(mut self, o: Overrides) -> Result<Config, ConfigError> {
        if !o.inboxes.is_empty() {
            self.inboxes = o.inboxes;
        }
        if let Some(r) = o.results {
            self.results = r;
        }
        if let Some(kind) = o.panel {
            self.panel.kind = kind;
        }
        if let Some(l) = o.listen {
            self.web.listen = l;
        }
        if let Some(m) = o.model {
            self.model = m;
        }
        if o.models_dir.is_some() {
            self.models_dir = o.models_dir;
        }
        if o.usb_mount_parent.is_some() {
            self.usb_mount_parent = o.usb_mount_parent;
        }
        if o.dicom_listen.is_some() {
            self.dicom.listen = o.dicom_listen;
        }
        if let Some(t) = o.ae_title {
            self.dicom.ae_title = t;
        }
        if let Some(p) = o.pacs {
            let peer: crate::dicom_net::scu::Peer = p.parse().map_err(ConfigError::Inconsistent)?;
            (self.pacs.ae_title, self.pacs.host, self.pacs.port) =
                (peer.ae_title, Some(peer.host), peer.port);
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Inconsistent(m));
        let inboxes = self.watched_inboxes();
        if inboxes.is_empty() && self.usb_mount_parent.is_none() {
            return bad(
                "nothing to watch: set at least one inbox, usb_mount_parent or dicom.listen".into(),
            );
        }
        // Results inside a watched folder would come back as inputs.
        let results = absolute(&self.results);
        for watched in inboxes.iter().chain(&self.usb_mount_parent) {
            let w = absolute(watched);
            if results.starts_with(&w) || w.starts_with(&results) {
                return bad(format!(
                    "the results folder {} must not be inside the watched folder {} (or contain it)",
                    self.results.display(),
                    watched.display()
                ));
            }
        }
        if self.web.enabled
            && !self.web.listen.ip().is_loopback()
            && self.web.token.as_deref().unwrap_or("").len() < 4
        {
            return bad(format!(
                "the web console listens on {}, beyond this machine: set web.token (at least 4 characters) in the config",
                self.web.listen
            ));
        }
        if self.web.tls_cert.is_some() != self.web.tls_key.is_some() {
            return bad("web.tls_cert and web.tls_key go together: set both, or neither for a self-signed certificate".into());
        }
        crate::dicom_net::scu::check_ae_title(&self.dicom.ae_title)
            .or_else(|e| bad(format!("dicom.ae_title: {e}")))?;
        for t in &self.dicom.allowed_calling_ae_titles {
            crate::dicom_net::scu::check_ae_title(t)
                .or_else(|e| bad(format!("dicom.allowed_calling_ae_titles: {e}")))?;
        }
        if let Some(peer) = self.pacs.peer() {
            peer.check().or_else(|e| bad(format!("pacs: {e}")))?;
            if self.pacs.tls && self.pacs.ca_cert.is_none() {
                return bad("pacs.tls needs pacs.ca_cert: the PACS's certificate (or the clinic's CA) to check it against".into());
            }
            if self.pacs.retry_min_s == 0 || self.pacs.retry_max_s < self.pacs.retry_min_s {
                return bad(format!(
                    "pacs.retry_min_s = {}, pacs.retry_max_s = {}: use at least 1 second, and a maximum no shorter than the minimum",
                    self.pacs.retry_min_s, self.pacs.retry_max_s
                ));
            }
        }
        if !(self.oa_target_sensitivity > 0.0 && self.oa_target_sensitivity <= 1.0) {
            return bad(format!(
                "oa_target_sensitivity = {}: use a number above 0 and at most 1, e.g. 0.90",
                self.oa_target_sensitivity
            ));
        }
        for (name, mb) in [
            ("max_file_mb", self.max_file_mb),
            ("web.max_upload_mb", self.web.max_upload_mb),
        ] {
            if !(1..=MAX_MB).contains(&mb) {
                return bad(format!("{name} = {mb}: use 1 to {MAX_MB} (megabytes)"));
            }
        }
        Ok(())
    }
}

/// The path made absolute against the working directory, without touching the filesystem.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The largest file size limit accepted (a Pi has 1–8 GB of memory; a radiograph is far smaller).
const MAX_MB: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.model, "int8");
        assert_eq!(c.web.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn every_example_config_in_board_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let config = Config::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                assert!(!config.show_patient_identity, "{path:?}: off unless asked");
                // The commented-out option is valid as written once uncommented.
                let on = text.replace(
                    "# show_patient_identity = false",
                    "show_patient_identity = true",
                );
                assert!(
                    Config::parse(&on).unwrap().show_patient_identity,
                    "{path:?}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 7, "{checked} example configs");
    }

    #[test]
    fn unknown_keys_are_an_error() {
        let e = Config::parse("modle = \"fp32\"\n").unwrap_err();
        assert!(e.to_string().contains("modle"), "{e}");
    }

    #[test]
    fn results_inside_an_inbox_is_refused() {
        let c = Config::parse("inboxes = [\"/data/in\"]\nresults = \"/data/in/results\"\nusb_mount_parent = \"/media\"\n").unwrap();
        assert!(c.with_overrides(Overrides::default()).is_err());
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let c = Config::parse("[web]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
        let e = c.clone().with_overrides(Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let mut with_token = c;
        with_token.web.token = Some("2468".into());
        assert!(with_token.with_overrides(Overrides::default()).is_ok());
    }

    #[test]
    fn size_limits_must_be_usable() {
        for text in [
            "max_file_mb = 0",
            "max_file_mb = 4097",
            "max_file_mb = 18446744073709551615",
            "[web]\nmax_upload_mb = 0",
            "[web]\nmax_upload_mb = 17592186044416",
        ] {
            let c = Config::parse(text).unwrap();
            let e = c.with_overrides(Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("use 1 to 4096"), "{text}: {e}");
        }
        let c = Config::parse("max_file_mb = 4096\n[web]\nmax_upload_mb = 4096").unwrap();
        assert!(c.with_overrides(Overrides::default()).is_ok());
    }

    #[test]
    fn the_dicom_flags_set_the_node_and_the_pacs() {
        let o = Overrides {
            dicom_listen: Some("0.0.0.0:11112".parse().unwrap()),
            ae_title: Some("KNEE_VAN_2".into()),
            pacs: Some("PACS1@10.1.2.3:104".into()),
            ..Default::default()
        };
        let c = Config::parse("").unwrap().with_overrides(o).unwrap();
        assert_eq!(c.dicom.ae_title, "KNEE_VAN_2");
        let peer = c.pacs.peer().unwrap();
        assert_eq!(peer.to_string(), "PACS1@10.1.2.3:104");
        assert!(
            c.watched_inboxes().contains(&c.dicom.received),
            "received images are watched"
        );
        for (flag, value) in [("ae_title", "A\\B"), ("pacs", "no-port@host")] {
            let mut o = Overrides::default();
            match flag {
                "ae_title" => o.ae_title = Some(value.into()),
                _ => o.pacs = Some(value.into()),
            }
            assert!(
                Config::parse("").unwrap().with_overrides(o).is_err(),
                "{flag} {value}"
            );
        }
        let inside = "results = \"/d/results\"\n[dicom]\nlisten = \"0.0.0.0:11112\"\nreceived = \"/d/results/received\"\n";
        let e = Config::parse(inside)
            .unwrap()
            .with_overrides(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("must not be inside"), "{e}");
    }

    #[test]
    fn a_pacs_over_tls_needs_a_certificate_to_check_it_against() {
        let text = "[pacs]\nhost = \"10.0.0.5\"\ntls = true\n";
        let e = Config::parse(text)
            .unwrap()
            .with_overrides(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("pacs.ca_cert"), "{e}");
        let text = format!("{text}ca_cert = \"/etc/kneescreen/pacs.pem\"\n");
        assert!(Config::parse(&text)
            .unwrap()
            .with_overrides(Overrides::default())
            .is_ok());
        let half = "[web]\ntls_cert = \"/etc/c.pem\"\n";
        let e = Config::parse(half)
            .unwrap()
            .with_overrides(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let c = Config::parse("inboxes = [\"/a\"]\n").unwrap();
        let o = Overrides {
            inboxes: vec!["/b".into()],
            results: Some("/r".into()),
            ..Default::default()
        };
        let c = c.with_overrides(o).unwrap();
        assert_eq!(c.inboxes, vec![PathBuf::from("/b")]);
        assert_eq!(c.results, PathBuf::from("/r"));
    }

    fn choice(variant: &str) -> ModelChoice {
        ModelChoice {
            variant: variant.into(),
            measured: "2026-12-02T10:00:00Z".into(),
            threads: 4,
            image_ms: [("fp32".to_string(), 61.23), ("int8".to_string(), 88.0)].into(),
        }
    }

    #[test]
    fn the_chosen_model_is_written_into_the_config_keeping_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kneescreen.toml");
        let text = "# the clinic's own note\ninboxes = [\"/srv/in\"]\nmodel = \"int8\" # as shipped\n\n[web]\nlisten = \"127.0.0.1:8080\"\n";
        std::fs::write(&path, text).unwrap();
        record_model_choice(&path, &choice("fp32")).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("# the clinic's own note"), "{written}");
        assert!(
            written.contains("model = \"fp32\" # as shipped\n"),
            "{written}"
        );
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.model, "fp32");
        assert_eq!(c.inboxes, vec![PathBuf::from("/srv/in")]);
        assert_eq!(c.web.listen.port(), 8080);
        let recorded = c.model_choice.unwrap();
        assert_eq!(recorded.image_ms["fp32"], 61.2, "rounded to 0.1 ms");
        assert_eq!(recorded.threads, 4);
        // A second choice replaces the first.
        record_model_choice(&path, &choice("int8")).unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(
            (c.model.as_str(), c.model_choice.unwrap().variant.as_str()),
            ("int8", "int8")
        );
    }

    #[test]
    fn a_missing_config_is_created_and_a_broken_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.toml");
        record_model_choice(&path, &choice("fp32")).unwrap();
        assert_eq!(Config::load(Some(&path)).unwrap().model, "fp32");
        for broken in ["model = ", "colour = \"blue\"\n"] {
            std::fs::write(&path, broken).unwrap();
            let e = record_model_choice(&path, &choice("fp32")).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid(..)), "{e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
        }
    }

    #[test]
    fn the_status_names_the_choice_only_while_it_is_the_configured_model() {
        let c = choice("fp32");
        let said = c.describe("fp32").unwrap();
        assert_eq!(said, "fastest here, 61 ms per image (bench 2026-12-02)");
        assert_eq!(c.describe("int8"), None, "changed by hand since");
    }
}
