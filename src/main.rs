//! The `kneescreen` binary: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    kneescreen::cli::run(kneescreen::cli::Cli::parse())
}
