// SPDX-License-Identifier: GPL-2.0
//! hibsnap: the userspace side of hibernation by a kernel-only snapshot.
//! See `Documentation/power/hibsnap.rst`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod freeze;
mod image;

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
    /// Take an image with snapshot_kernel(2), write it to a block device, power off. In the
    /// restored system the same command returns and releases the freeze.
    Hibernate {
        /// The block device to write the image to (not mounted, not swap, not dm-hibsnap).
        #[arg(long, value_name = "DEVICE")]
        image: String,
        /// The key that authenticates the image: 32 bytes, or 64 hexadecimal digits.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// Everything but the power off: snapshot, write, verify, release.
        #[arg(long)]
        dry_run: bool,
        /// Threads that compress (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// zstd level.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
    },
    /// In the next boot's initramfs: check the image and hand it to the kernel's loader.
    /// Returns only if nothing was restored.
    Resume {
        /// The block device the image was written to.
        #[arg(long, value_name = "DEVICE")]
        image: String,
        /// The key the image was written with.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Print an image's header and geometry, and verify every chunk.
    Inspect {
        /// The image (a block device or a file).
        image: String,
        /// The key the image was written with.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Freeze { hold, show, watch } => freeze::run(hold, show, &watch),
        Command::Hibernate {
            image,
            key_file,
            dry_run,
            threads,
            level,
        } => image::hibernate(&image::Hibernate {
            image: &image,
            key: &key_file,
            dry_run,
            threads: threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            level,
        }),
        Command::Resume { image, key_file } => image::resume(&image, &key_file),
        Command::Inspect { image, key_file } => image::inspect(&image, &key_file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hibsnap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
