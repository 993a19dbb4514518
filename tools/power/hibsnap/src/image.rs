// SPDX-License-Identifier: GPL-2.0
//! `hibsnap hibernate`, `hibsnap resume` and `hibsnap inspect`: the image written to a block
//! device as a container, read back, checked and handed to the kernel's loader.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};

use hibsnap::container::{hex, Codec, Header, Key, Reader, DEFAULT_CHUNK, HEADER_LEN};
use hibsnap::stream::{read_container, working_set, write_container};
use hibsnap::sys::{self, snapshot_dev};
use hibsnap::uapi;

use crate::target::{Target, WRITE_BUFFER};

/// Where the key comes from.
pub enum KeySource<'a> {
    /// A file: 32 bytes, or 64 hexadecimal digits.
    File(&'a Path),
    /// A `user` key of this description in the kernel keyring, in the same forms.
    Keyring(&'a str),
}

/// Reads the key.
pub fn load_key(source: &KeySource<'_>) -> Result<Key> {
    match source {
        KeySource::File(path) => {
            let data =
                std::fs::read(path).with_context(|| format!("key file {}", path.display()))?;
            Key::from_file_contents(&data).with_context(|| format!("key file {}", path.display()))
        }
        KeySource::Keyring(desc) => {
            let data = sys::user_key(desc).map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::ENOKEY) => "not found".to_string(),
                    _ => e.to_string(),
                };
                anyhow::anyhow!("user key {desc:?} in the kernel keyring: {why}")
            })?;
            Key::from_file_contents(&data)
                .with_context(|| format!("user key {desc:?} in the kernel keyring"))
        }
    }
}

/// What `snapshot_kernel(2)`'s errors mean to an administrator.
fn snapshot_error(e: std::io::Error) -> anyhow::Error {
    let why = match e.raw_os_error() {
        Some(libc::EPERM) => {
            "hibernation is not permitted here (kernel lockdown, nohibernate, or no CAP_SYS_ADMIN)"
        }
        Some(libc::EBUSY) => "a device or filesystem is busy: the kernel log names it",
        Some(libc::ENOMEM) => "not enough free memory for the copy of kernel memory",
        _ => "",
    };
    anyhow::Error::new(e).context(format!("snapshot_kernel: {why}"))
}

/// Refuses early, before the freeze, what `snapshot_kernel(2)` would refuse under lockdown.
fn check_lockdown() -> Result<()> {
    let state = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    if let Some(mode) = state
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']))
        .filter(|m| *m != "none")
    {
        bail!("kernel lockdown ({mode}) forbids hibernation: nothing was frozen or written");
    }
    Ok(())
}

/// `hibsnap hibernate` options.
pub struct Hibernate<'a> {
    pub image: &'a str,
    pub key: KeySource<'a>,
    pub dry_run: bool,
    pub no_poweroff: bool,
    pub threads: usize,
    pub level: i32,
    pub loader_reserve_mib: u64,
}

/// The memory, in MiB, that the next boot needs besides the image by default: in the test VM
/// (a 23 MiB initramfs, 1 GiB) the loader's kernel, initramfs and `hibsnap resume` use 100 to
/// 120 MiB of MemTotal with the image loaded, the allocator's reserves included.
pub const LOADER_RESERVE_MIB: u64 = 128;

/// A progress bar on a terminal (bytes, MiB/s, time left), drawn by a thread of its own.
///
/// While userspace is frozen, a terminal's reader (sshd, a terminal emulator) may be
/// stopped too: once the terminal's buffer is full, a write to it blocks. Only the drawing
/// thread may block then, never the stream: the writer only stores the position, and never
/// waits for the thread.
struct Progress {
    pos: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl Progress {
    /// Starts the drawing thread if standard error is a terminal that can draw (not
    /// `TERM=dumb`, as on a serial console logged to a file).
    fn start(len: u64, message: String) -> Progress {
        let p = Progress {
            pos: Arc::new(AtomicU64::new(0)),
            done: Arc::new(AtomicBool::new(false)),
        };
        let draws = std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_some_and(|t| t != "dumb");
        if draws {
            let (pos, done) = (Arc::clone(&p.pos), Arc::clone(&p.done));
            std::thread::spawn(move || {
                let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                            {binary_bytes_per_sec}, {eta} left",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar.set_message(message);
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(pos.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(500));
                }
                bar.finish_and_clear();
            });
        }
        p
    }

    fn set(&self, n: u64) {
        self.pos.store(n, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// The threads that compress or decompress by default: one per CPU.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `hibsnap hibernate`.
pub fn hibernate(o: &Hibernate<'_>) -> Result<()> {
    let key = load_key(&o.key)?;
    check_lockdown()?;
    let (target, sink) = Target::for_writing(o.image)?;
    sys::mlockall().context("mlockall")?;
    // What the writer allocates after the atomic point, reserved by snapshot_kernel(2):
    // there is no more free memory than that then, when user memory is most of RAM.
    let overhead_pages =
        working_set(u64::from(DEFAULT_CHUNK), o.threads, WRITE_BUFFER).div_ceil(4096);
    let release = sys::kernel_release();
    let build_id = sys::kernel_build_id();
    // Drawn before the freeze: getrandom(2) blocks until the kernel's generator is seeded,
    // which early after boot can take a second, and nothing should wait while all is frozen.
    let image_id = sys::random_bytes().context("getrandom")?;
    let start = Instant::now();
    // SIGINT and SIGTERM no longer kill the tool: once the image is written they cancel
    // (below), and until then the image is not complete, so not restorable.
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&cancel)).context("signal handlers")?;
    }
    let freeze = sys::freeze_processes(0).context("freeze_processes")?;
    let helpers = match target {
        Target::Server(_) => "(the image goes to a server through the kernel's network stack)",
        _ => "(the image goes to a raw block device)",
    };
    println!(
        "froze userspace in {:.0} ms; no helper continued {helpers}",
        start.elapsed().as_secs_f64() * 1e3
    );
    let image = sys::snapshot_kernel(overhead_pages, 0).map_err(snapshot_error)?;
    let g = sys::geometry(&image).context("HIBSNAP_IOC_GEOMETRY")?;
    if g.flags & uapi::GEOMETRY_RESUMED != 0 {
        drop(image);
        drop(freeze);
        println!("hibsnap: resumed from the image on {target}; every process runs on");
        return Ok(());
    }
    let snapshot_s = start.elapsed().as_secs_f64();
    // The kernel's loader holds all of the image in memory before it restores it: an image
    // the next boot cannot hold would be written only to fail there.
    let total = sys::meminfo_kib("MemTotal").context("/proc/meminfo: MemTotal")? << 10;
    let reserve = o.loader_reserve_mib << 20;
    ensure!(
        g.image_bytes.saturating_add(reserve) <= total,
        "the image of {} MiB leaves {} MiB of MemTotal ({} MiB) to the next boot's loader, \
            less than --loader-reserve {} MiB: not written; the freeze is released",
        g.image_bytes >> 20,
        total.saturating_sub(g.image_bytes) >> 20,
        total >> 20,
        o.loader_reserve_mib
    );
    let chunk = u64::from(DEFAULT_CHUNK);
    let worst = HEADER_LEN as u64 + g.image_bytes + g.image_bytes.div_ceil(chunk) * 4096 + 4096;
    let room = sink.room(&target);
    ensure!(
        room >= worst,
        "image target {target} is too small: room for {room} bytes, an image of {} bytes \
            needs up to {worst}; the freeze is released",
        g.image_bytes,
    );
    let header = Header {
        chunk_size: DEFAULT_CHUNK,
        codec: Codec::Zstd(o.level),
        image_id,
        key_id: key.id(),
        stream_bytes: g.image_bytes,
        release,
        build_id,
        geometry: g,
    };
    let progress = Progress::start(g.image_bytes, format!("writing to {target}"));
    let t0 = Instant::now();
    let written = write_container(
        &File::from(image.try_clone()?),
        sink,
        header,
        &key,
        o.threads,
        |n| progress.set(n),
    )
    .and_then(|(sink, totals)| sink.finish().map(|()| totals));
    drop(progress);
    let totals = match written {
        Ok(totals) => totals,
        Err(e) => {
            // A partial image has no trailer, and is refused; invalid is plainer.
            let _ = target.invalidate();
            return Err(e);
        }
    };
    println!(
        "image: {} MiB of stream in {} MiB on {target} ({:.2}x, {} zero pages not \
            stored), snapshot {:.2} s, written in {:.2} s",
        g.image_bytes >> 20,
        totals.stored_bytes >> 20,
        g.image_bytes as f64 / (totals.stored_bytes + HEADER_LEN as u64) as f64,
        totals.zero_pages,
        snapshot_s,
        t0.elapsed().as_secs_f64()
    );
    // The image on the target is valid from here. Whatever fails, and whenever the system is
    // to run on (a dry run, a cancel), it is invalidated before the freeze is released: it
    // must never be restored over a system that ran on.
    let ended = end(o, &target, key, &cancel);
    if ended.is_err() || o.dry_run {
        if let Err(e) = target.invalidate() {
            eprintln!(
                "hibsnap: invalidating the image on {target} failed: {e:#}; do not resume it"
            );
        }
    }
    drop(image);
    drop(freeze);
    ended
}

/// What follows a written image: a dry run's check, the wait of `--no-poweroff`, or the
/// power off. Returns only when the system is to run on.
fn end(o: &Hibernate<'_>, target: &Target, key: Key, cancel: &AtomicBool) -> Result<()> {
    if o.dry_run {
        let r = Reader::new(target.reader()?, key)?;
        read_container(r, o.threads, |_| Ok(()))?;
        println!(
            "dry run: the image on {target} verified, then invalidated; freeze released, \
                no power off"
        );
        return Ok(());
    }
    let cancelled = || {
        cancel.load(Ordering::Relaxed).then(|| {
            anyhow!(
                "cancelled by a signal: the image on {target} is \
                invalidated, every process runs on"
            )
        })
    };
    if let Some(e) = cancelled() {
        return Err(e);
    }
    if o.no_poweroff {
        println!(
            "not powering off (--no-poweroff): the system stays frozen until it is switched off; \
             SIGINT or SIGTERM cancels"
        );
        loop {
            if let Some(e) = cancelled() {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("powering off");
    Err(sys::power_off()).context("power off")
}

/// Runs `hibsnap resume`: returns only if the image is not restored.
pub fn resume(image: &str, key: &KeySource<'_>) -> Result<()> {
    let key = load_key(key)?;
    let target = Target::for_reading(image)?;
    let r = Reader::new(target.reader()?, key).with_context(|| format!("image {target}"))?;
    let h = r.header().clone();
    let release = sys::kernel_release();
    let build_id = sys::kernel_build_id();
    ensure!(
        h.release == release && h.build_id == build_id,
        "the image is of kernel {} (build id {}), this is {} (build id {}): not restored",
        h.release,
        hex(&h.build_id),
        release,
        hex(&build_id)
    );
    let threads = cpus();
    // The kernel's loader takes the memory of the whole image when the first page comes,
    // and little stays free: every page of the tool's is in memory, and stays there, before
    // (read_container allocates its buffers before it reads a chunk).
    sys::mlockall().context("mlockall")?;
    let mut feeding = Duration::ZERO;
    let t0 = Instant::now();
    let mut snap = OpenOptions::new()
        .write(true)
        .open("/dev/snapshot")
        .context("/dev/snapshot")?;
    snapshot_dev::freeze(&snap).context("SNAPSHOT_FREEZE")?;
    let fed = (|| -> Result<()> {
        // Chunks are checked and decompressed on the other CPUs while this thread feeds the
        // kernel, in order; a bad chunk stops it before a byte of it is fed.
        read_container(r, threads, |chunk| {
            let t = Instant::now();
            let fed = snap.write_all(chunk).context("feeding /dev/snapshot");
            feeding += t.elapsed();
            fed
        })?;
        // Never restored twice: the image is invalidated before control passes to it.
        target.invalidate().context("invalidating the image")
    })();
    if let Err(e) = fed {
        let _ = snapshot_dev::unfreeze(&snap);
        return Err(e.context(format!("image {target}: not restored")));
    }
    // What was left to spare: the loader holds the image's memory now.
    let free = sys::meminfo_kib("MemFree").map_or_else(|| "?".into(), |k| (k >> 10).to_string());
    println!(
        "hibsnap: {} MiB verified and loaded in {:.2} s ({:.2} s of it in the kernel's \
            loader; {free} MiB free), restoring",
        h.stream_bytes >> 20,
        t0.elapsed().as_secs_f64(),
        feeding.as_secs_f64()
    );
    let err = snapshot_dev::atomic_restore(&snap).err();
    let _ = snapshot_dev::unfreeze(&snap);
    bail!("SNAPSHOT_ATOMIC_RESTORE failed: {err:?}")
}

/// Runs `hibsnap inspect`.
pub fn inspect(image: &str, key: &KeySource<'_>) -> Result<()> {
    let key = load_key(key)?;
    let target = Target::for_reading(image)?;
    let mut r = Reader::new(target.reader()?, key).with_context(|| format!("image {target}"))?;
    let h = r.header().clone();
    let g = h.geometry;
    println!("image {image}: hibsnap container version 1");
    println!(
        "  kernel        {} (build id {})",
        h.release,
        hex(&h.build_id)
    );
    println!("  image id      {}", hex(&h.image_id));
    println!("  key id        {}", hex(&h.key_id));
    println!(
        "  chunks        {} KiB, {}",
        h.chunk_size >> 10,
        h.codec.name()
    );
    println!(
        "  stream        {} bytes ({} pages of {} bytes)",
        h.stream_bytes,
        h.stream_bytes / 4096,
        g.page_size
    );
    println!(
        "  pages         copied {}, streamed {}, zero {}, meta {}",
        g.copied_pages, g.streamed_pages, g.zero_pages, g.meta_pages
    );
    println!(
        "  user pages    cow {}, denied {}, shared {}; copied: pinned {}, swapcache {}, \
            exclusive {}, shared written {}",
        g.cow_pages,
        g.denied_pages,
        g.shared_pages,
        g.pinned_pages,
        g.swapcache_pages,
        g.exclusive_pages,
        g.written_pages
    );
    println!(
        "  atomic point  {:.1} ms with interrupts off",
        g.atomic_ns as f64 / 1e6
    );
    while r.next_chunk()?.is_some() {}
    let t = r.totals();
    println!(
        "  verified      {} chunks, {} bytes stored ({:.2}x), {} zero pages not stored",
        t.chunks,
        t.stored_bytes,
        t.raw_bytes as f64 / (t.stored_bytes + HEADER_LEN as u64) as f64,
        t.zero_pages
    );
    Ok(())
}
