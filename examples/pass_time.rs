//! One network pass of several models, timed against the first in the same run.
//!
//! `cargo run --release --example pass_time -- [--rounds 5] [--passes 15] MODEL...`
//!
//! MODEL is a variant of the shipped card (`fp32`, `int8`, `fp16` where the CPU has it) or an
//! ONNX file with the card's layout, optionally with `:nchw` to keep the file's channels-first
//! convolutions (the appliance runs them channels-last) and then `:mmN` to split each pass's
//! matrix products over a pool of N threads (tract's `multithread-mm`), e.g.
//! `fp32 fp32:nchw fp32:mm2 /tmp/other.onnx`.
//! The models take turns, round after round, so a busy machine slows them alike; each round
//! prints every model's median pass and its ratio to the first model's, and the last line the
//! median of the rounds' ratios. Also prints the matrix kernels tract selected for each, and with
//! `--profile` where one pass's time goes: milliseconds per kind of operation (median of 5).

use std::time::Instant;

use kneescreen::pipeline::model::{default_models_dir, Classifier, ConvLayout};
use kneescreen::pipeline::preprocess::INPUT_SIZE;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

struct Entry {
    label: String,
    classifier: Classifier,
    pool: Option<Executor>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut rounds = 5;
    let mut passes = 15;
    let mut profile = false;
    let mut labels = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().unwrap_or_default().parse()?,
            "--passes" => passes = args.next().unwrap_or_default().parse()?,
            "--profile" => profile = true,
            _ => labels.push(a),
        }
    }
    anyhow::ensure!(
        !labels.is_empty(),
        "usage: pass_time [--rounds N] [--passes N] MODEL..."
    );
    let dir = default_models_dir();
    let mut entries = Vec::new();
    for label in labels {
        let (model, pool) = match label.rsplit_once(":mm") {
            Some((model, n)) => (model.to_string(), Some(Executor::multithread(n.parse()?))),
            None => (label.clone(), None),
        };
        let (model, layout) = match model.strip_suffix(":nchw") {
            Some(m) => (m.to_string(), ConvLayout::AsExported),
            None => (model, ConvLayout::ChannelsLast),
        };
        let mut classifier = Classifier::load_with_layout(&dir, &model, layout)?;
        classifier.set_threads(1);
        println!("{label}: kernels {:?}", classifier.kernels());
        entries.push(Entry {
            label,
            classifier,
            pool,
        });
    }
    let input = vec![0.5f32; (INPUT_SIZE * INPUT_SIZE * 3) as usize];
    if profile {
        for e in &entries {
            let runs = (0..5)
                .map(|_| e.classifier.profile(&input))
                .collect::<Result<Vec<_>, _>>()?;
            let total = median(runs.iter().map(|r| r.values().map(|v| v.1).sum()).collect());
            println!("{}: one pass {total:.2} ms, by operation:", e.label);
            let mut ops: Vec<(String, usize, f64)> = runs[0]
                .iter()
                .map(|(op, (n, _))| {
                    (
                        op.clone(),
                        *n,
                        median(runs.iter().map(|r| r[op].1).collect()),
                    )
                })
                .collect();
            ops.sort_by(|a, b| b.2.total_cmp(&a.2));
            for (op, n, ms) in ops {
                println!(
                    "  {op:<28} ×{n:<4} {ms:>8.2} ms {:>5.1} %",
                    100.0 * ms / total
                );
            }
        }
    }
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); entries.len()];
    for round in 1..=rounds {
        let mut medians = Vec::new();
        for e in &entries {
            let pass = || e.classifier.infer(&input).map(|_| ());
            let mut times = Vec::new();
            for _ in 0..passes {
                let t = Instant::now();
                match &e.pool {
                    Some(pool) => multithread_tract_scope(pool.clone(), pass)?,
                    None => pass()?,
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            medians.push(median(times));
        }
        let line: Vec<String> = entries
            .iter()
            .zip(&medians)
            .enumerate()
            .map(|(i, (e, ms))| {
                ratios[i].push(ms / medians[0]);
                format!("{} {ms:.2} ms ({:.2}×)", e.label, ms / medians[0])
            })
            .collect();
        println!("round {round}: {}", line.join(", "));
    }
    let summary: Vec<String> = entries
        .iter()
        .zip(ratios)
        .map(|(e, r)| format!("{} {:.2}×", e.label, median(r)))
        .collect();
    println!(
        "median ratio to {}: {}",
        entries[0].label,
        summary.join(", ")
    );
    Ok(())
}
