// SPDX-License-Identifier: GPL-2.0
//! hibsnap: the userspace side of hibernation by a kernel-only snapshot.
//! See `Documentation/power/hibsnap.rst`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod freeze;

#[derive(Parser)]
#[command(
    name = "hibsnap",
    version,
    about = "Hibernation by a kernel-only snapshot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stop every other userspace process with freeze_processes(2), hold, release.
    Freeze {
        /// Seconds to hold the freeze.
        #[arg(long, default_value_t = 1.0)]
        hold: f64,
        /// List every userspace process and its state while frozen.
        #[arg(long)]
        show: bool,
        /// A file whose first line must not change while frozen (a counter written by a
        /// process that should be stopped); may be given several times.
        #[arg(long, value_name = "FILE")]
        watch: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Freeze { hold, show, watch } => freeze::run(hold, show, &watch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hibsnap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
