//! The command line: argument definitions and the `preprocess`, `analyze`, `eval` and `bench`
//! commands. Exit codes: 0 every input analysed, 2 some input rejected, 1 internal failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::calibration::{self, collect, heads};
use crate::pipeline::decode::{self, limits::Limits};
use crate::pipeline::model::{self, Classifier};
use crate::pipeline::{self, preprocess, screening};
use crate::record::{Outcome, Record};
use crate::store::{atomic, results_dir};
use crate::tools::{bench, eval, figures};

#[derive(Parser, Debug)]
#[command(
    name = "kneescreen",
    version,
    about = "Knee osteoarthritis screening aid: Kellgren–Lawrence grade and Grad-CAM from a knee radiograph. Not a diagnosis."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the exact network input (224×224, after equalizeHist, before /255) as a PNG.
    Preprocess { input: PathBuf, output: PathBuf },
    /// Grade knee radiographs.
    Analyze(AnalyzeArgs),
    /// Measure accuracy on a folder laid out as <grade>/<image>.
    Eval(EvalArgs),
    /// Time each stage for every shipped model.
    Bench(BenchArgs),
    /// Fit a site head to this clinic's own graded knees (DIR/<grade>/<image>), or go back to
    /// the shipped head (--revert).
    Calibrate(CalibrateArgs),
    /// Run the appliance: watch inboxes and USB sticks, grade new X-rays, drive the panel and
    /// the web console.
    Run(RunArgs),
    /// Sign a models folder's card.json with a release key (scripts/sign-models.sh).
    SignModels(SignArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML config file (default: /etc/kneescreen/kneescreen.toml when present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A folder to watch (repeatable; replaces the config's inboxes).
    #[arg(long = "inbox")]
    pub inboxes: Vec<PathBuf>,
    /// Where results, the journal and panel.png go.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Where USB sticks are mounted.
    #[arg(long)]
    pub usb_parent: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub panel: Option<crate::hw::PanelKind>,
    /// Web console address (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// int8, fp32, int8-arm (made for aarch64), fp16 (CPUs with half-precision arithmetic), or a
    /// path to an ONNX file.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Receive images from scanners over DICOM on this address (e.g. 0.0.0.0:11112).
    #[arg(long)]
    pub dicom_listen: Option<std::net::SocketAddr>,
    /// This node's DICOM AE title (default KNEESCREEN).
    #[arg(long)]
    pub ae_title: Option<String>,
    /// Send results to this PACS, written AE_TITLE@HOST:PORT (e.g. ORTHANC@192.168.1.20:4242).
    #[arg(long)]
    pub pacs: Option<String>,
    /// Grade what is there, then exit (batch use and tests).
    #[arg(long)]
    pub exit_when_idle: bool,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// int8, fp32, int8-arm (made for aarch64), fp16 (CPUs with half-precision arithmetic), or a
    /// path to an ONNX file with the card's layout.
    #[arg(long, default_value = "int8")]
    pub model: String,
    /// Folder holding card.json and the model files (default: found next to the binary).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// The sensitivity the OA call is set for (the threshold on P(KL >= 2) comes from the
    /// model card's ROC).
    #[arg(long, default_value_t = screening::DEFAULT_TARGET_SENSITIVITY)]
    pub oa_sensitivity: f64,
}

impl ModelArgs {
    fn load(&self) -> anyhow::Result<Classifier> {
        let mut classifier = model::load_classifier(self.models_dir.as_deref(), &self.model)?;
        classifier.set_target_sensitivity(self.oa_sensitivity)?;
        Ok(classifier)
    }
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON array with a record per file.
    #[arg(long)]
    pub json: bool,
    /// Write <name>.json and <name>.overlay.png per file into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub json: bool,
    /// Write the confusion matrix (confusion.png) and the ROC curve of the OA call with its
    /// operating point (roc.png) into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the ROC of P(KL >= 2) on this set as JSON (the model card's `oa_roc` when the set is
    /// the selection slice).
    #[arg(long)]
    pub roc_json: Option<PathBuf>,
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Folder holding card.json and the model files (default: found next to the binary).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Repetitions per stage (the median is reported).
    #[arg(long, default_value_t = 15)]
    pub runs: usize,
    /// Threads for one image's network passes (default: with --choose, the config's
    /// `inference_threads`, else every core; 1 runs the image and its mirror one after the other).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Set `model` in the config file to the fastest variant that gives the same grade as fp32
    /// on at least 99 % of the drawn knees, and record the measurement there.
    #[arg(long)]
    pub choose: bool,
    /// The config file --choose writes (created when missing).
    #[arg(long, default_value = crate::config::SYSTEM_CONFIG)]
    pub config: PathBuf,
    /// Drawn knees each variant's grades are compared with fp32's on (default: 50 with
    /// --choose, else none).
    #[arg(long)]
    pub agreement_knees: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Make the site head active even when cross-validation shows it is not better.
    #[arg(long)]
    pub force: bool,
    /// Go back to the shipped head (site heads stay on disk).
    #[arg(long, conflicts_with = "force")]
    pub revert: bool,
    #[arg(long)]
    pub json: bool,
    /// Graded knees: DIR/0 … DIR/4, one knee per image (crops, or single-knee radiographs).
    #[arg(required_unless_present = "revert")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The private key (PKCS#8 Ed25519), kept outside the repository.
    #[arg(long)]
    pub key: PathBuf,
    /// Make a new key in --key first (it must not exist) and print its verifying key.
    #[arg(long)]
    pub new_key: bool,
    /// The signer's name, as records will show it.
    #[arg(long, default_value = "kneescreen project release key")]
    pub name: String,
    /// The models folder (default: the one the appliance would use).
    pub dir: Option<PathBuf>,
}

/// Runs a parsed command line and maps the outcome to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Preprocess { input, output } => preprocess_cmd(&input, &output),
        Command::Analyze(args) => analyze_cmd(&args),
        Command::Eval(args) => eval_cmd(&args),
        Command::Bench(args) => bench_cmd(&args),
        Command::Calibrate(args) => calibrate_cmd(&args),
        Command::Run(args) => run_cmd(args),
        Command::SignModels(args) => sign_models_cmd(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kneescreen: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

const REJECTED: u8 = 2;

/// Inputs are only ever read: true when `a` and `b` name the same existing file or folder.
fn same_place(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn preprocess_cmd(input: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !same_place(input, output),
        "{} is the input: write the output to another file",
        output.display()
    );
    let limits = Limits::default();
    let gray = pipeline::input::read_input(input, limits.max_file_bytes)
        .map_err(|e| e.to_string())
        .and_then(|bytes| decode::decode_gray(&bytes, &limits).map_err(|e| e.to_string()));
    match gray {
        Ok(gray) => {
            let out = preprocess::preprocess(&gray);
            atomic::write_png(output, &out)
                .with_context(|| format!("writing {}", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("{}: rejected: {reason}", input.display());
            Ok(ExitCode::from(REJECTED))
        }
    }
}

fn analyze_cmd(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        // Result files named after an input could replace another input in the same folder.
        let folder_of = |f: &PathBuf| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."), // a bare file name
        };
        if let Some(input) = args.files.iter().find(|f| same_place(&folder_of(f), out)) {
            anyhow::bail!(
                "--out {} holds the input {}: write the results into another folder",
                out.display(),
                input.display()
            );
        }
    }
    let classifier = args.model.load()?;
    let limits = Limits::default();
    let mut records = Vec::new();
    let mut any_rejected = false;
    let mut used_stems = std::collections::HashSet::new();
    for path in &args.files {
        let a = pipeline::analyze_file(path, &classifier, &limits)?;
        if let Some(out) = &args.out {
            let stem = unique_stem(path, &mut used_stems);
            results_dir::write_analysis(out, &stem, &a)
                .with_context(|| format!("writing results into {}", out.display()))?;
        }
        match a.record.rejection() {
            Some(reason) => {
                any_rejected = true;
                eprintln!("{}: rejected: {reason}", a.record.file);
            }
            None if !args.json => println!("{}", describe(&a.record)),
            None => {}
        }
        records.push(a.record);
    }
    if args.json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &records)?;
        writeln!(stdout)?;
    }
    Ok(if any_rejected {
        ExitCode::from(REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// A file stem for the results folder that no other input of this run has taken.
fn unique_stem(path: &Path, used: &mut std::collections::HashSet<String>) -> String {
    let base = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    let mut stem = base.clone();
    let mut n = 1;
    while !used.insert(stem.clone()) {
        n += 1;
        stem = format!("{base}-{n}");
    }
    stem
}

/// A few human-readable lines for one graded file.
pub fn describe(record: &Record) -> String {
    let g = match &record.outcome {
        Outcome::Ok(g) => g,
        Outcome::Rejected { reason } => return format!("{}: rejected: {reason}", record.file),
    };
    let probs: Vec<String> = g
        .headline
        .probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| format!("KL{i} {p:.2}"))
        .collect();
    let mut s = format!(
        "{}: KL{} ({}), OA {} — confidence {:.2}\n  probabilities: {}",
        record.file,
        g.headline.grade,
        g.headline.grade_name,
        if g.headline.oa { "yes" } else { "no" },
        g.headline.confidence,
        probs.join("  ")
    );
    if g.refer {
        let why = (g.refer_reason.map(|r| format!(" ({})", r.label()))).unwrap_or_default();
        s.push_str(&format!(
            "\n  REFER{why}: a clinician should read this image"
        ));
    }
    if g.knees.len() > 1 {
        for k in &g.knees {
            let [x, y, w, h] = k.bbox;
            let refer = if k.refer { ", REFER" } else { "" };
            s.push_str(&format!(
                "\n  {}: KL{} ({}), OA {} — confidence {:.2}{refer} — box {x},{y} {w}×{h}",
                k.side.title(),
                k.graded.grade,
                k.graded.grade_name,
                if k.graded.oa { "yes" } else { "no" },
                k.graded.confidence,
            ));
        }
    }
    for w in &g.warnings {
        s.push_str(&format!("\n  warning: {w}"));
    }
    s
}

fn eval_cmd(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let classifier = args.model.load()?;
    let report = eval::evaluate(
        &args.dir,
        &classifier,
        &Limits::default(),
        eval::Progress::on_terminal(),
    )?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        let title = format!(
            "{} ({}) on {}",
            classifier.card().name,
            classifier.variant,
            args.dir.display()
        );
        let path = out.join("confusion.png");
        atomic::write_png(&path, &figures::confusion_png(&report.metrics, &title))?;
        eprintln!("wrote {}", path.display());
        if let Some(s) = &report.oa_screening {
            let point = s
                .operating_point
                .as_ref()
                .map(|op| (op, (s.sensitivity, s.specificity)));
            let path = out.join("roc.png");
            atomic::write_png(&path, &figures::roc_png(&s.roc, point, &title))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.roc_json {
        let s = report
            .oa_screening
            .as_ref()
            .context("no ROC: the set needs both OA (KL >= 2) and non-OA knees")?;
        atomic::write_atomic(path, serde_json::to_string_pretty(&s.roc)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    for (file, reason) in &report.skipped {
        eprintln!("{file}: rejected: {reason}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}) on {}\n{}{}",
            classifier.card().name,
            classifier.variant,
            args.dir.display(),
            report.metrics.to_text(),
            report.screening_text()
        );
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REJECTED)
    })
}

fn bench_cmd(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .models_dir
        .clone()
        .unwrap_or_else(model::default_models_dir);
    let knees = (args.agreement_knees).unwrap_or(if args.choose { 50 } else { 0 });
    anyhow::ensure!(
        !args.choose || knees > 0,
        "--choose compares every variant with fp32: give --agreement-knees at least 1"
    );
    // --choose measures at the thread count the appliance runs with: the config's, when set.
    let threads = match args.threads {
        None if args.choose && args.config.is_file() => {
            crate::config::Config::load(Some(&args.config))?.inference_threads
        }
        given => given,
    };
    let report = bench::run(&dir, args.runs, threads, knees)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_text());
    }
    if args.choose {
        let chosen = bench::fastest_agreeing(&report).ok_or_else(|| {
            anyhow::anyhow!(
                "no variant grades the drawn knees as fp32 does; the config is unchanged"
            )
        })?;
        let choice = crate::config::ModelChoice {
            variant: chosen.name.clone(),
            measured: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            threads: chosen.threads,
            image_ms: report
                .models
                .iter()
                .map(|m| (m.name.clone(), m.image_ms))
                .collect(),
        };
        crate::config::record_model_choice(&args.config, &choice)?;
        eprintln!(
            "chose {} ({:.1} ms per image) and set it in {}; restart the appliance to use it",
            chosen.name,
            chosen.image_ms,
            args.config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn sign_models_cmd(args: &SignArgs) -> anyhow::Result<ExitCode> {
    use crate::pipeline::signature::SigningKey;
    let dir = (args.dir.clone()).unwrap_or_else(crate::pipeline::model::default_models_dir);
    let card = dir.join(crate::pipeline::model::CARD_FILE);
    // Checked before a new key is made, so a mistyped folder does not leave a key behind.
    anyhow::ensure!(
        card.is_file(),
        "{} not found: is {} a models folder?",
        card.display(),
        dir.display()
    );
    let key = match args.new_key {
        true => SigningKey::create(&args.key, &args.name)?,
        false => SigningKey::load(&args.key, &args.name)?,
    };
    key.sign_file(&card)
        .with_context(|| format!("signing {}", card.display()))?;
    println!(
        "signed {} with {} (verifying key {})",
        card.display(),
        args.name,
        crate::pipeline::digest::hex(&key.trusted().public)
    );
    Ok(ExitCode::SUCCESS)
}

fn calibrate_cmd(args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let models_dir = args
        .model
        .models_dir
        .clone()
        .unwrap_or_else(model::default_models_dir);
    if args.revert {
        match heads::revert(&models_dir)? {
            Some(was) => println!("back to the shipped head (the site head {was} is kept on disk)"),
            None => println!("the shipped head is already in use"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args
        .dir
        .as_deref()
        .context("a folder of graded knees is needed")?;
    let target = args.model.oa_sensitivity;
    let mut classifier = model::load_classifier(Some(&models_dir), &args.model.model)?;
    classifier.without_site_head(target)?;
    let progress = eval::Progress::on_terminal();
    let collected = collect::from_dir(dir, &classifier, &Limits::default(), |i, n| {
        progress.show(i, n)
    })?;
    for r in &collected.refused {
        eprintln!("{}: not used: {}", r.path, r.reason);
    }
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let source = dir.display().to_string();
    let result = calibration::calibrate(
        &collected.examples,
        &classifier,
        &source,
        target,
        calibration::LAMBDA,
        &created,
    )?;
    let saved = heads::keep(&models_dir, result, args.force)?;
    match args.json {
        true => println!(
            "{}",
            serde_json::to_string_pretty(&saved.to_json(&collected.refused))?
        ),
        false => println!("{}", saved.to_text(collected.refused.len())),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cmd(args: RunArgs) -> anyhow::Result<ExitCode> {
    let overrides = crate::config::Overrides {
        inboxes: args.inboxes,
        results: args.results,
        panel: args.panel,
        listen: args.listen,
        model: args.model,
        models_dir: args.models_dir,
        usb_mount_parent: args.usb_parent,
        dicom_listen: args.dicom_listen,
        ae_title: args.ae_title,
        pacs: args.pacs,
    };
    let config = crate::config::Config::load(args.config.as_deref())?.with_overrides(overrides)?;
    crate::appliance::run(config, args.exit_when_idle)?;
    Ok(ExitCode::SUCCESS)
}
