// SPDX-License-Identifier: GPL-2.0
//! hibsnap: the userspace side of hibernation by a kernel-only snapshot.
//! See `Documentation/power/hibsnap.rst`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod freeze;
mod image;
mod target;

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

/// The key that authenticates images: from a file or from the kernel keyring.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct KeyArgs {
    /// The key in a file: 32 bytes, or 64 hexadecimal digits.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The key in the kernel keyring: a `user` key of this description (32 bytes, or 64
    /// hexadecimal digits), found with request_key(2).
    #[arg(long, value_name = "DESCRIPTION")]
    keyring: Option<String>,
}

impl KeyArgs {
    fn source(&self) -> image::KeySource<'_> {
        match (&self.key_file, &self.keyring) {
            (Some(path), _) => image::KeySource::File(path),
            (None, Some(desc)) => image::KeySource::Keyring(desc),
            (None, None) => unreachable!("clap requires one of the group"),
        }
    }
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
    /// Take an image with snapshot_kernel(2), write it to a block device or a server, power
    /// off. In the restored system the same command returns and releases the freeze.
    Hibernate {
        /// Where the image goes: a block device (not mounted, not swap, not dm-hibsnap), or
        /// tcp://IP:PORT[/NAME] for `hibsnap serve`.
        #[arg(long, value_name = "TARGET")]
        image: String,
        #[command(flatten)]
        key: KeyArgs,
        /// Everything but the power off: snapshot, write, verify, release.
        #[arg(long, conflicts_with = "no_poweroff")]
        dry_run: bool,
        /// Do not power off: stay frozen until the machine is switched off from outside (a
        /// hypervisor, the power button); SIGINT or SIGTERM cancels and invalidates the image.
        #[arg(long)]
        no_poweroff: bool,
        /// Threads that compress (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// zstd level.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// MiB of memory the next boot needs besides the image to load it (its kernel,
        /// initramfs, this tool and the allocator's reserves): an image that leaves less of
        /// MemTotal is not written, and the freeze is released.
        #[arg(long, value_name = "MIB", default_value_t = image::LOADER_RESERVE_MIB)]
        loader_reserve: u64,
    },
    /// In the next boot's initramfs: check the image and hand it to the kernel's loader.
    /// Returns only if nothing was restored.
    Resume {
        /// Where the image was written: a block device, or tcp://IP:PORT[/NAME].
        #[arg(long, value_name = "TARGET")]
        image: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print an image's header and geometry, and verify every chunk.
    Inspect {
        /// The image: a block device, a file, or tcp://IP:PORT[/NAME].
        image: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Store images sent to tcp:// targets in a directory, and serve them back.
    Serve {
        /// The IP address and port to listen on, such as 127.0.0.1:7000 (port 0: any free one).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: String,
        /// The directory that keeps the images, one NAME.hibsnap file each.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Runs `hibsnap serve`: prints the address it listens on, then a line per request.
fn serve(listen: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: want IP:PORT"))?;
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {listen}"))?;
    println!(
        "hibsnap serve: listening on {}, images in {}",
        listener.local_addr()?,
        dir.display()
    );
    hibsnap::remote::serve(listener, dir, |line| println!("hibsnap serve: {line}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Freeze { hold, show, watch } => freeze::run(hold, show, &watch),
        Command::Hibernate {
            image,
            key,
            dry_run,
            no_poweroff,
            threads,
            level,
            loader_reserve,
        } => image::hibernate(&image::Hibernate {
            image: &image,
            key: key.source(),
            dry_run,
            no_poweroff,
            threads: threads.unwrap_or_else(image::cpus),
            level,
            loader_reserve_mib: loader_reserve,
        }),
        Command::Resume { image, key } => image::resume(&image, &key.source()),
        Command::Inspect { image, key } => image::inspect(&image, &key.source()),
        Command::Serve { listen, dir } => serve(&listen, &dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hibsnap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
