//! The command line: argument definitions and the `preprocess`, `analyze`, `eval` and `bench`
//! commands. Exit codes: 0 every input analysed, 2 some input rejected, 1 internal failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::pipeline::decode::{self, limits::Limits};
use crate::pipeline::model::{self, Classifier};
use crate::pipeline::{self, preprocess};
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
    /// Run the appliance: watch inboxes and USB sticks, grade new X-rays, drive the panel and
    /// the web console.
    Run(RunArgs),
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
    /// int8, fp32, or a path to an ONNX file.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Grade what is there, then exit (batch use and tests).
    #[arg(long)]
    pub exit_when_idle: bool,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// int8, fp32, or a path to an ONNX file with the card's layout.
    #[arg(long, default_value = "int8")]
    pub model: String,
    /// Folder holding card.json and the model files (default: found next to the binary).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

impl ModelArgs {
    fn load(&self) -> anyhow::Result<Classifier> {
        model::load_classifier(self.models_dir.as_deref(), &self.model)
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
    /// Write the confusion matrix as confusion.png into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    /// Threads for one image's network passes (default: every core; 1 runs the image and its
    /// mirror one after the other).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs a parsed command line and maps the outcome to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Preprocess { input, output } => preprocess_cmd(&input, &output),
        Command::Analyze(args) => analyze_cmd(&args),
        Command::Eval(args) => eval_cmd(&args),
        Command::Bench(args) => bench_cmd(&args),
        Command::Run(args) => run_cmd(args),
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
        .probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| format!("KL{i} {p:.2}"))
        .collect();
    let mut s = format!(
        "{}: KL{} ({}), OA {} — confidence {:.2}\n  probabilities: {}",
        record.file,
        g.grade,
        g.grade_name,
        if g.oa { "yes" } else { "no" },
        g.confidence,
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
                k.grade,
                k.grade_name,
                if k.oa { "yes" } else { "no" },
                k.confidence,
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
    }
    for (file, reason) in &report.skipped {
        eprintln!("{file}: rejected: {reason}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.metrics)?);
    } else {
        println!(
            "{} ({}) on {}\n{}",
            classifier.card().name,
            classifier.variant,
            args.dir.display(),
            report.metrics.to_text()
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
    let report = bench::run(&dir, args.runs, args.threads)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_text());
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
    };
    let config = crate::config::Config::load(args.config.as_deref())?.with_overrides(overrides)?;
    crate::appliance::run(config, args.exit_when_idle)?;
    Ok(ExitCode::SUCCESS)
}
