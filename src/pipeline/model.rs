//! The classifier: finds the model card, loads the ONNX file it names with tract (optimised once),
//! and turns a network input into logits, calibrated probabilities and the last feature map — of
//! the image, and of its left-right mirror when the card says `flip_average`.

use std::path::{Path, PathBuf};

use crate::pipeline::digest::sha256_hex;
use serde::{Deserialize, Serialize};
use tract_onnx::pb::{ModelProto, TensorProto};
use tract_onnx::prelude::multithread::{self, Executor};
use tract_onnx::prelude::*;

use crate::pipeline::cam::{self, CamError, FeatureMap};
use crate::pipeline::head::Head;
use crate::pipeline::preprocess::{self, INPUT_SIZE};
use crate::pipeline::screening::{self, OperatingPoint, Roc, RocError, DEFAULT_TARGET_SENSITIVITY};
use crate::pipeline::signature;
use crate::pipeline::site_head::{self, SiteHeadError};
use crate::record::HeadId;

/// File name of the model card inside a models folder.
pub const CARD_FILE: &str = "card.json";

/// Why a model could not be loaded or run. Each one means the installation is broken, not the image.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The models folder or card is missing or unreadable: reinstall the models folder.
    #[error("cannot read the model card {path}: {source}")]
    CardUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The card is not signed by a trusted key, or was changed after signing.
    #[error("{0}")]
    Signature(#[from] signature::SignatureError),
    /// The card is not valid JSON of the expected shape.
    #[error("the model card {path} is malformed: {source}")]
    CardMalformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// `--model` named a variant the card does not list.
    #[error("the model card lists no model {0:?} (it has: {1})")]
    UnknownVariant(String, String),
    /// The half-precision variant was asked for on a CPU without half-precision arithmetic.
    #[error("the {FP16} model needs a CPU with half-precision arithmetic (asimdhp, e.g. the Cortex-A76 of a Raspberry Pi 5); this one has none: use int8 or fp32")]
    NoHalfPrecision,
    /// The ONNX file is missing or unreadable.
    #[error("cannot read the model file {path}: {source}")]
    FileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The shipped file differs from the one the card describes: a damaged or mixed-up install.
    #[error("the model file {path} does not match its card (sha256 {actual}, card says {expected}); reinstall the models folder")]
    HashMismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    /// The model's own head does not reproduce its logits: Grad-CAM would be wrong.
    #[error("model self-test failed: the head recomputed from {0} does not reproduce the model's logits (max difference {1})")]
    SelfTest(String, f32),
    /// The model's outputs do not have the shapes Grad-CAM needs.
    #[error("Grad-CAM could not be computed from the model's outputs: {0}")]
    Cam(#[from] CamError),
    /// The active site head cannot be used.
    #[error("{0}")]
    SiteHead(#[from] SiteHeadError),
    /// The card's ROC of the OA call is unusable, or the target sensitivity is out of range.
    #[error("the OA operating point: {0}")]
    OperatingPoint(#[from] RocError),
    /// Anything tract reports (unsupported operator, wrong shapes, …).
    #[error("the model could not be loaded or run: {0}")]
    Tract(String),
}

impl From<TractError> for ModelError {
    fn from(e: TractError) -> Self {
        ModelError::Tract(format!("{e:#}"))
    }
}

/// One grade as the card describes it: name and Kellgren–Lawrence description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradeInfo {
    pub grade: u8,
    pub label: String,
    pub name: String,
    pub description: String,
}

/// A model file listed in the card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub file: String,
    pub sha256: String,
    /// ROC of P(KL ≥ 2) on the selection slice, from which the OA call's threshold is derived
    /// for a target sensitivity; without it OA is called for grades ≥ `oa_from_grade`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oa_roc: Option<Roc>,
    /// The CPU architecture the file is made for (as `std::env::consts::ARCH` names it, e.g.
    /// "aarch64"): elsewhere it still loads when asked for by name, but it is not offered, because
    /// its kernels there are slow (the integer int8 variant on x86).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ModelFile {
    /// Whether this file is made for the CPU this binary runs on.
    pub fn suits_this_cpu(&self) -> bool {
        self.arch
            .as_deref()
            .is_none_or(|a| a == std::env::consts::ARCH)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorName {
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub features: TensorName,
    pub logits: TensorName,
}

/// Initializer names of the head's weights inside the ONNX file (the one source of truth).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadNames {
    pub w1: String,
    pub b1: String,
    pub w2: String,
    pub b2: String,
}

/// The model card: what the binary needs to know about the shipped models (written by scripts/export.py).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub name: String,
    pub intended_use: String,
    pub classes: Vec<GradeInfo>,
    pub oa_from_grade: u8,
    pub preprocessing: String,
    pub input: TensorName,
    pub outputs: Outputs,
    pub head: HeadNames,
    /// Softmax temperature fitted on the selection slice, so that confidence means what it says.
    pub temperature: f32,
    /// Below this top-class probability the result asks for a clinician's read.
    pub refer_below_confidence: f32,
    /// Grade from the mean of the logits of the image and its left-right mirror (left and right
    /// knees are mirror images, and the model was trained on both); absent means one pass.
    #[serde(default)]
    pub flip_average: bool,
    pub default: String,
    pub models: std::collections::BTreeMap<String, ModelFile>,
    /// Who signed the card (checked when it is loaded); not part of the file.
    #[serde(skip)]
    pub signer: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Card {
    /// Reads the card, refusing it unless it carries the signature of a key compiled into this
    /// binary (`signature::project_keys`).
    pub fn load(dir: &Path) -> Result<Card, ModelError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::CardUnreadable {
            path: path.clone(),
            source,
        })?;
        let signer = signature::verify(&path, text.as_bytes(), &signature::project_keys())?;
        let mut card: Card = serde_json::from_str(&text)
            .map_err(|source| ModelError::CardMalformed { path, source })?;
        card.signer = signer.to_string();
        Ok(card)
    }
}

/// Loads the model `which` (a variant of the card, or an ONNX path) from `dir`, or from the
/// folder `default_models_dir` finds when `dir` is `None`.
pub fn load_classifier(dir: Option<&Path>, which: &str) -> anyhow::Result<Classifier> {
    use anyhow::Context;
    let dir = dir.map_or_else(default_models_dir, Path::to_path_buf);
    Classifier::load(&dir, which)
        .with_context(|| format!("loading model {which:?} from {}", dir.display()))
}

/// Where the models folder is: `$KNEESCREEN_MODELS`, next to the binary, `../share/kneescreen/models`
/// from it, the working directory, then the source tree (for tests and `cargo run`).
pub fn default_models_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("KNEESCREEN_MODELS") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        candidates.push(exe_dir.join("models"));
        candidates.push(exe_dir.join("../share/kneescreen/models"));
    }
    candidates.push(PathBuf::from("models"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let fallback = candidates.last().cloned().unwrap_or_default();
    candidates
        .into_iter()
        .find(|d| d.join(CARD_FILE).is_file())
        .unwrap_or(fallback)
}

/// What a single forward pass gives.
#[derive(Debug, Clone)]
pub struct Inference {
    pub logits: Vec<f32>,
    /// softmax(logits / temperature)
    pub probabilities: Vec<f32>,
    /// Last convolutional feature map, NHWC without the batch axis (7×7×1280).
    pub features: Vec<f32>,
    pub feature_height: usize,
    pub feature_width: usize,
    pub feature_channels: usize,
}

impl Inference {
    pub fn feature_map(&self) -> Result<FeatureMap<'_>, CamError> {
        FeatureMap::new(
            &self.features,
            self.feature_height,
            self.feature_width,
            self.feature_channels,
        )
    }

    /// The predicted grade (arg-max) and its probability.
    pub fn top(&self) -> (usize, f32) {
        arg_max(&self.probabilities)
    }
}

/// The index of the largest probability, and that probability.
fn arg_max(probabilities: &[f32]) -> (usize, f32) {
    probabilities
        .iter()
        .copied()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, p)| if p > best.1 { (i, p) } else { best },
        )
}

/// The pooled features of one knee's image and of its mirror: what a site head is fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct KneeFeatures {
    pub image: Vec<f32>,
    pub mirror: Option<Vec<f32>>,
}

impl KneeFeatures {
    fn of(image: &Inference, mirrored: Option<&Inference>) -> Result<KneeFeatures, CamError> {
        Ok(KneeFeatures {
            image: cam::global_average_pool(&image.feature_map()?),
            mirror: match mirrored {
                Some(m) => Some(cam::global_average_pool(&m.feature_map()?)),
                None => None,
            },
        })
    }

    /// The mean of the two views' features (the image's alone without a mirror).
    pub fn mean(&self) -> Vec<f32> {
        match &self.mirror {
            Some(m) => self
                .image
                .iter()
                .zip(m)
                .map(|(a, b)| 0.5 * (a + b))
                .collect(),
            None => self.image.clone(),
        }
    }
}

/// The model's answer for one image: one pass, or (with the card's `flip_average`) the mean of
/// the logits of the image and of its left-right mirror.
#[derive(Debug, Clone)]
pub struct Classification {
    pub logits: Vec<f32>,
    /// softmax(logits / temperature)
    pub probabilities: Vec<f32>,
    pub image: Inference,
    pub mirrored: Option<Inference>,
}

impl Classification {
    /// The predicted grade (arg-max) and its probability.
    pub fn top(&self) -> (usize, f32) {
        arg_max(&self.probabilities)
    }

    /// The pooled features of the image and its mirror.
    pub fn features(&self) -> Result<KneeFeatures, CamError> {
        KneeFeatures::of(&self.image, self.mirrored.as_ref())
    }

    /// Grad-CAM of `class` for the logits this classification used.
    pub fn grad_cam(&self, head: &Head, class: usize) -> Result<cam::CamGrid, CamError> {
        let image = self.image.feature_map()?;
        match &self.mirrored {
            Some(m) => cam::grad_cam_with_mirror(&image, &m.feature_map()?, head, class),
            None => cam::grad_cam(&image, head, class),
        }
    }
}

type Plan = TypedSimplePlan;

/// The variant that runs the card's fp32 file in half precision (translated when it is loaded):
/// offered on CPUs with half-precision arithmetic only.
pub const FP16: &str = "fp16";

/// The card variant whose file the half-precision variant translates.
const FP16_SOURCE: &str = "fp32";

/// True when tract has half-precision kernels for this CPU (aarch64 with `asimdhp`).
pub fn cpu_has_fp16() -> bool {
    tract_linalg::has_fp16()
}

/// The variants this machine can run: the card's that suit its CPU, and fp16 where the CPU has
/// it.
pub fn runnable_variants(card: &Card) -> Vec<String> {
    let mut names: Vec<String> = card
        .models
        .iter()
        .filter(|(_, m)| m.suits_this_cpu())
        .map(|(name, _)| name.clone())
        .collect();
    if cpu_has_fp16() && card.models.contains_key(FP16_SOURCE) {
        names.push(FP16.to_string());
    }
    names
}

/// A loaded, optimised model with its head weights and card.
pub struct Classifier {
    plan: std::sync::Arc<Plan>,
    head: Head,
    card: Card,
    /// Variant name ("int8", "fp32") or the path given.
    pub variant: String,
    pub file: PathBuf,
    pub sha256: String,
    /// Who signed the card that names this model file (`None`: a file given by path).
    pub signer: Option<String>,
    /// The network runs in half precision (the fp16 variant): inputs and outputs are f16.
    half: bool,
    features_index: usize,
    logits_index: usize,
    /// Threads for one image's network passes: with two or more, the image and its mirror run
    /// at the same time.
    threads: usize,
    /// The pool that splits one pass's matrix products, when there are threads beyond one per
    /// view (`None`: each pass runs on its own thread).
    pass_pool: Option<Executor>,
    /// The OA call's threshold on P(KL ≥ 2), when the card (or the site head) has a ROC.
    oa_call: Option<OperatingPoint>,
    /// The clinic's calibrated head, when one is active and was fitted on this backbone.
    site: Option<site_head::Loaded>,
}

/// How the optimised plan lays out the convolutions' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvLayout {
    /// Channels last (NHWC), the default: tract's vectorised depthwise kernel then runs along the
    /// channels, about twice as fast as along the image rows of the exported layout.
    ChannelsLast,
    /// As the ONNX file has it (NCHW, the only layout ONNX convolutions have).
    AsExported,
}

/// The default for `Classifier::threads`: every core this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Classifier {
    /// Loads `which` ("int8", "fp32", or a path to an ONNX file with the card's layout) from `dir`.
    pub fn load(dir: &Path, which: &str) -> Result<Classifier, ModelError> {
        Classifier::load_with_layout(dir, which, ConvLayout::ChannelsLast)
    }

    /// `load`, with the convolutions' data laid out as asked (to measure one against the other).
    pub fn load_with_layout(
        dir: &Path,
        which: &str,
        layout: ConvLayout,
    ) -> Result<Classifier, ModelError> {
        let card = Card::load(dir)?;
        let half = which == FP16;
        if half && !cpu_has_fp16() {
            return Err(ModelError::NoHalfPrecision);
        }
        let listed = if half { FP16_SOURCE } else { which };
        let (file, expected, oa_roc) = match card.models.get(listed) {
            Some(m) => (dir.join(&m.file), Some(m.sha256.clone()), m.oa_roc.clone()),
            None if which.ends_with(".onnx") => (PathBuf::from(which), None, None),
            None => {
                let known = card.models.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(ModelError::UnknownVariant(which.to_string(), known));
            }
        };
        // The card's signature covers the files it names (by their sha256, checked below).
        let expected_signer = expected.as_ref().map(|_| card.signer.clone());
        let bytes = std::fs::read(&file).map_err(|source| ModelError::FileUnreadable {
            path: file.clone(),
            source,
        })?;
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = expected.filter(|e| *e != sha256) {
            return Err(ModelError::HashMismatch {
                path: file,
                actual: sha256,
                expected,
            });
        }
        let onnx = tract_onnx::onnx();
        let proto: ModelProto = onnx.proto_model_for_read(&mut &bytes[..])?;
        let head = read_head(&onnx, &proto, &card)?;
        let mut model = onnx.model_for_proto_model(&proto)?;
        let shape: Vec<usize> = card.input.shape.clone();
        model = model.with_input_fact(0, f32::fact(shape).into())?;
        let output_index = |name: &str| {
            proto
                .graph
                .iter()
                .flat_map(|g| g.output.iter())
                .position(|o| o.name == name)
                .ok_or_else(|| {
                    ModelError::Tract(format!("the model file has no output named {name:?}"))
                })
        };
        let features_index = output_index(&card.outputs.features.name)?;
        let logits_index = output_index(&card.outputs.logits.name)?;
        let mut typed = model.into_typed()?.into_decluttered()?;
        if half {
            to_half_precision(&mut typed, features_index)?;
        }
        if layout == ConvLayout::ChannelsLast {
            to_channels_last(&mut typed)?;
        }
        let plan = typed.into_optimized()?.into_runnable()?;
        // A head fitted on another backbone (the other variant) does not apply to this one.
        let site = site_head::load_active(dir)?.filter(|s| s.stored.backbone_sha256 == sha256);
        let oa_roc = site.as_ref().map(|s| s.stored.oa_roc.clone()).or(oa_roc);
        let mut classifier = Classifier {
            plan,
            head,
            card,
            variant: which.to_string(),
            signer: expected_signer,
            file,
            sha256,
            half,
            features_index,
            logits_index,
            threads: 1,
            pass_pool: None,
            oa_call: oa_roc
                .map(|roc| screening::operating_point(&roc, DEFAULT_TARGET_SENSITIVITY))
                .transpose()?,
            site: None,
        };
        classifier.set_threads(default_threads());
        // The self-test checks the shipped head against the model's own logits.
        classifier.self_test()?;
        classifier.site = site;
        Ok(classifier)
    }

    pub fn card(&self) -> &Card {
        &self.card
    }

    /// The head that grades: the active site head, else the shipped one.
    pub fn head(&self) -> &Head {
        self.site.as_ref().map_or(&self.head, |s| &s.head)
    }

    /// The head inside the model file.
    pub fn shipped_head(&self) -> &Head {
        &self.head
    }

    /// The softmax temperature of the shipped head (a site head is fitted as probabilities: 1).
    pub fn shipped_temperature(&self) -> f32 {
        self.card.temperature
    }

    /// Grades with the shipped head from now on (the OA call back to the card's ROC at `target`).
    pub fn without_site_head(&mut self, target: f64) -> Result<(), ModelError> {
        self.site = None;
        self.oa_call = self.shipped_oa_call(target)?;
        Ok(())
    }

    /// The shipped head's OA call at `target` sensitivity, from the card's ROC (none without one).
    pub fn shipped_oa_call(&self, target: f64) -> Result<Option<OperatingPoint>, ModelError> {
        let roc = self
            .card
            .models
            .get(&self.variant)
            .and_then(|m| m.oa_roc.as_ref());
        Ok(roc
            .map(|r| screening::operating_point(r, target))
            .transpose()?)
    }

    /// Which head grades, for the records.
    pub fn head_id(&self) -> HeadId {
        match &self.site {
            Some(s) => HeadId {
                name: format!("{}/{}", site_head::DIR, s.file),
                sha256: Some(s.sha256.clone()),
                signer: Some(s.signer.to_string()),
            },
            None => HeadId::default(),
        }
    }

    /// Threads one image's passes may use (at least 1).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How OA is called: P(KL ≥ 2) ≥ the threshold; `None` calls it for grades ≥ `oa_from_grade`.
    pub fn oa_call(&self) -> Option<&OperatingPoint> {
        self.oa_call.as_ref()
    }

    /// Re-derives the OA call's threshold for `target` sensitivity from the card's ROC.
    pub fn set_target_sensitivity(&mut self, target: f64) -> Result<(), ModelError> {
        self.oa_call = match &self.site {
            Some(site) => Some(screening::operating_point(&site.stored.oa_roc, target)?),
            None => self.shipped_oa_call(target)?,
        };
        Ok(())
    }

    /// Sets the threads one image's passes may use (0 is taken as 1): the image and its mirror
    /// run at once from two; the threads beyond one per view split each pass's matrix products.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
        let pass_threads = self.pass_threads();
        self.pass_pool = (pass_threads > 1).then(|| Executor::multithread(self.threads));
    }

    /// How many views (the image, its mirror) run at the same time.
    fn views_at_once(&self) -> usize {
        if self.card.flip_average && self.threads > 1 {
            2
        } else {
            1
        }
    }

    /// Threads one network pass uses while the other views run beside it.
    pub fn pass_threads(&self) -> usize {
        (self.threads / self.views_at_once()).max(1)
    }

    /// Whether the network runs in half precision (the fp16 variant).
    pub fn is_half_precision(&self) -> bool {
        self.half
    }

    /// Classifies the network input image (`preprocess::preprocess`), as the card says: one pass,
    /// or the mean of the image's and its mirror's logits.
    pub fn classify(&self, network_input: &image::GrayImage) -> Result<Classification, ModelError> {
        let pass = |img: &image::GrayImage| self.infer(&preprocess::to_network_input(img));
        let flipped = self
            .card
            .flip_average
            .then(|| image::imageops::flip_horizontal(network_input));
        let (image, mirrored) = match &flipped {
            // Both views at once: the mirror on a second thread.
            Some(flipped) if self.views_at_once() > 1 => std::thread::scope(|scope| {
                let mirror = scope.spawn(|| pass(flipped));
                let image = pass(network_input);
                let mirror = mirror
                    .join()
                    .map_err(|_| ModelError::Tract("the mirror's network pass panicked".into()))?;
                Ok::<_, ModelError>((image?, Some(mirror?)))
            })?,
            Some(flipped) => (pass(network_input)?, Some(pass(flipped)?)),
            None => (pass(network_input)?, None),
        };
        let logits: Vec<f32> = match (&self.site, &mirrored) {
            // Linear: the mean of the two views' logits is the logits of their mean features.
            (Some(site), _) => {
                let pooled = KneeFeatures::of(&image, mirrored.as_ref())?.mean();
                site.head.logits(&pooled)?
            }
            (None, Some(m)) => image
                .logits
                .iter()
                .zip(&m.logits)
                .map(|(a, b)| 0.5 * (a + b))
                .collect(),
            (None, None) => image.logits.clone(),
        };
        Ok(Classification {
            probabilities: self.calibrated(&logits),
            logits,
            image,
            mirrored,
        })
    }

    /// softmax(logits / temperature).
    fn calibrated(&self, logits: &[f32]) -> Vec<f32> {
        let temperature = match self.site {
            Some(_) => 1.0,
            None => self.card.temperature,
        };
        let scaled: Vec<f32> = logits.iter().map(|z| z / temperature).collect();
        cam::softmax(&scaled)
    }

    /// Runs the network once on a preprocessed input (`preprocess::to_network_input`).
    pub fn infer(&self, input: &[f32]) -> Result<Inference, ModelError> {
        let tensor = self.input_tensor(input)?;
        let run = || self.plan.run(tvec!(tensor.into()));
        let outputs = match &self.pass_pool {
            Some(pool) => multithread::multithread_tract_scope(pool.clone(), run)?,
            None => run()?,
        };
        let features_t = outputs[self.features_index].cast_to::<f32>()?;
        let shape = features_t.shape().to_vec();
        if shape.len() != 4 {
            return Err(ModelError::Tract(format!(
                "feature map has shape {shape:?}, expected 1×H×W×C"
            )));
        }
        let features = features_t
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        let logits: Vec<f32> = outputs[self.logits_index]
            .cast_to::<f32>()?
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        Ok(Inference {
            probabilities: self.calibrated(&logits),
            logits,
            features,
            feature_height: shape[1],
            feature_width: shape[2],
            feature_channels: shape[3],
        })
    }

    /// The network's input tensor from a preprocessed input (f16 for the half-precision variant).
    fn input_tensor(&self, input: &[f32]) -> Result<Tensor, ModelError> {
        let s = INPUT_SIZE as usize;
        let tensor = tract_ndarray::Array4::from_shape_vec((1, s, s, 3), input.to_vec())
            .map_err(|e| ModelError::Tract(format!("input of the wrong size: {e}")))?;
        let tensor = Tensor::from(tensor);
        Ok(match self.half {
            true => tensor.cast_to::<f16>()?.into_owned(),
            false => tensor,
        })
    }

    /// One pass on one thread, timed operation by operation: per kind of operation (tract's
    /// name for it), how many ran and their total milliseconds. Where a pass's time goes.
    pub fn profile(
        &self,
        input: &[f32],
    ) -> Result<std::collections::BTreeMap<String, (usize, f64)>, ModelError> {
        let mut per_op = std::collections::BTreeMap::<String, (usize, f64)>::new();
        let mut state = self.plan.spawn()?;
        state.run_plan_with_eval(
            tvec!(self.input_tensor(input)?.into()),
            |ctx, op_state, node, inputs| {
                let started = std::time::Instant::now();
                let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                let entry = per_op.entry(node.op().name().to_string()).or_default();
                entry.0 += 1;
                entry.1 += started.elapsed().as_secs_f64() * 1e3;
                outputs
            },
        )?;
        Ok(per_op)
    }

    /// The matrix-multiplication kernels tract selected for this model on this CPU, with how
    /// many operations use each (e.g. `arm64fp16_mmm_f16_16x8_gen`, `avx2_mmm_f32_16x6`).
    pub fn kernels(&self) -> std::collections::BTreeMap<String, usize> {
        use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
        let mut kernels = std::collections::BTreeMap::new();
        for node in self.plan.model().nodes() {
            if let Some(op) = node.op_as::<OptMatMul>() {
                for mmm in &op.mmm {
                    *kernels.entry(mmm.name().to_string()).or_insert(0) += 1;
                }
            }
        }
        kernels
    }

    /// Recomputes the logits from the feature map through the head read from the file: if they
    /// differ, the Grad-CAM weights would not be the model's own.
    fn self_test(&self) -> Result<(), ModelError> {
        let s = INPUT_SIZE as usize;
        // A smooth synthetic probe with some structure; any input exercises the head.
        let probe: Vec<f32> = (0..s * s * 3)
            .map(|i| ((i / 3) % s) as f32 / s as f32)
            .collect();
        let out = self.infer(&probe)?;
        let pooled = cam::global_average_pool(&out.feature_map()?);
        let recomputed = self.head.logits(&pooled)?;
        let diff = recomputed
            .iter()
            .zip(&out.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = out.logits.iter().map(|z| z.abs()).fold(1.0, f32::max);
        if diff > 1e-3 * scale {
            return Err(ModelError::SelfTest(self.file.display().to_string(), diff));
        }
        Ok(())
    }
}

/// Translates the backbone to half precision, up to and including the node that gives the
/// feature map; the head after it stays in f32, so the logits are the shipped head applied to
/// the (half-precision) features, which is what Grad-CAM differentiates.
fn to_half_precision(model: &mut TypedModel, features_index: usize) -> Result<(), ModelError> {
    let successors = |id: usize| -> Vec<usize> {
        let outputs = &model.node(id).outputs;
        outputs
            .iter()
            .flat_map(|o| o.successors.iter().map(|i| i.node))
            .collect()
    };
    let mut head = std::collections::HashSet::new();
    let mut next = successors(model.output_outlets()?[features_index].node);
    while let Some(id) = next.pop() {
        if head.insert(id) {
            next.extend(successors(id));
        }
    }
    let translator = tract_onnx::tract_core::floats::FloatPrecisionTranslator::with_filter(
        f32::datum_type(),
        f16::datum_type(),
        move |node| !head.contains(&node.id),
    );
    model.transform(&translator)?;
    Ok(())
}

/// Rewrites every float convolution to run channels-last (tract's `conv_nhwc` rewrite): the
/// data is moved channels-last before each convolution and back after it, and tract's
/// decluttering removes the moves that meet between consecutive layers. Same arithmetic per
/// output value; only the order of the memory walk changes.
fn to_channels_last(model: &mut TypedModel) -> Result<(), ModelError> {
    let rewrite = tract_onnx::tract_core::transform::get_transform("conv_nhwc")?
        .ok_or_else(|| ModelError::Tract("this tract has no conv_nhwc rewrite".into()))?;
    rewrite.transform(model)?;
    Ok(())
}

fn read_head(onnx: &tract_onnx::Onnx, proto: &ModelProto, card: &Card) -> Result<Head, ModelError> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Tract("the ONNX file has no graph".into()))?;
    let load = |name: &str| -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let t: &TensorProto = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                ModelError::Tract(format!("head weight {name:?} not found in the model file"))
            })?;
        let tensor = tract_onnx::tensor::load_tensor(&*onnx.provider, t, None)?;
        let values = tensor
            .cast_to::<f32>()?
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        Ok((values, tensor.shape().to_vec()))
    };
    let (w1, s1) = load(&card.head.w1)?;
    let (b1, _) = load(&card.head.b1)?;
    let (w2, s2) = load(&card.head.w2)?;
    let (b2, _) = load(&card.head.b2)?;
    if s1.len() != 2 || s2.len() != 2 {
        return Err(ModelError::Tract(format!(
            "head weights have shapes {s1:?} and {s2:?}, expected matrices"
        )));
    }
    Ok(Head::new(w1, b1, w2, b2, s1[0], s1[1], s2[1])?)
}
