// SPDX-License-Identifier: GPL-2.0
//! `hibsnap hibernate`, `hibsnap resume` and `hibsnap inspect`: the image written to a block
//! device as a container, read back, checked and handed to the kernel's loader.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use hibsnap::container::{hex, Codec, Header, Key, Reader, DEFAULT_CHUNK, HEADER_LEN};
use hibsnap::stream::write_container;
use hibsnap::sys::{self, snapshot_dev};
use hibsnap::uapi;

/// Reads the key file.
pub fn load_key(path: &Path) -> Result<Key> {
    let data = std::fs::read(path).with_context(|| format!("key file {}", path.display()))?;
    Key::from_file_contents(&data).with_context(|| format!("key file {}", path.display()))
}

/// The block device an image goes to, checked: not mounted, not swap, not a dm-hibsnap
/// device (whose writes are held in RAM during a snapshot).
struct Target {
    path: String,
    file: File,
    size: u64,
}

impl Target {
    fn open(path: &str) -> Result<Target> {
        let meta = std::fs::metadata(path).with_context(|| format!("image target {path}"))?;
        ensure!(
            meta.file_type().is_block_device(),
            "image target {path}: not a block device"
        );
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        let name = std::fs::canonicalize(path)?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dev = format!("{major}:{minor}");
        if let Some(line) = mounts
            .lines()
            .find(|l| l.split(' ').nth(2) == Some(dev.as_str()))
        {
            bail!(
                "image target {path} is mounted on {}: unmount it first",
                line.split(' ').nth(4).unwrap_or("?")
            );
        }
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        ensure!(
            !swaps
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().next().is_some_and(|s| {
                    std::fs::canonicalize(s)
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_owned()))
                        == Some(name.clone().into())
                })),
            "image target {path} is in use as swap: swapoff it first"
        );
        if let Ok(dm_name) = std::fs::read_to_string(format!("/sys/dev/block/{dev}/dm/name")) {
            let table = std::process::Command::new("dmsetup")
                .args(["table", dm_name.trim()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            ensure!(
                !table.split_whitespace().any(|w| w == "hibsnap"),
                "image target {path} is a dm-hibsnap device: its writes stay in RAM during a snapshot; use the device under it, or another"
            );
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("image target {path}"))?;
        let size = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Target {
            path: path.to_string(),
            file,
            size,
        })
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

/// `hibsnap hibernate` options.
pub struct Hibernate<'a> {
    pub image: &'a str,
    pub key: &'a Path,
    pub dry_run: bool,
    pub threads: usize,
    pub level: i32,
}

/// Runs `hibsnap hibernate`.
pub fn hibernate(o: &Hibernate<'_>) -> Result<()> {
    let key = load_key(o.key)?;
    let target = Target::open(o.image)?;
    sys::mlockall().context("mlockall")?;
    let release = sys::kernel_release()?;
    let build_id = sys::kernel_build_id();
    let start = Instant::now();
    let freeze = sys::freeze_processes(0).context("freeze_processes")?;
    println!(
        "froze userspace in {:.0} ms; no helper continued (the image goes to a raw block device)",
        start.elapsed().as_secs_f64() * 1e3
    );
    let image = sys::snapshot_kernel(0, 0).map_err(snapshot_error)?;
    let g = sys::geometry(&image).context("HIBSNAP_IOC_GEOMETRY")?;
    if g.flags & uapi::GEOMETRY_RESUMED != 0 {
        drop(image);
        drop(freeze);
        println!(
            "hibsnap: resumed from the image on {}; every process runs on",
            o.image
        );
        return Ok(());
    }
    let snapshot_s = start.elapsed().as_secs_f64();
    let chunk = u64::from(DEFAULT_CHUNK);
    let worst = HEADER_LEN as u64 + g.image_bytes + g.image_bytes.div_ceil(chunk) * 4096 + 4096;
    ensure!(
        target.size >= worst,
        "image target {} is too small: {} bytes, an image of {} bytes needs up to {}",
        target.path,
        target.size,
        g.image_bytes,
        worst
    );
    let header = Header {
        chunk_size: DEFAULT_CHUNK,
        codec: Codec::Zstd(o.level),
        image_id: sys::random_bytes()?,
        key_id: key.id(),
        stream_bytes: g.image_bytes,
        release,
        build_id,
        geometry: g,
    };
    let out = BufWriter::with_capacity(4 << 20, &target.file);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let t0 = Instant::now();
    let mut shown = 0.0;
    let (out, totals) = write_container(
        &File::from(image.try_clone()?),
        out,
        header,
        &key,
        o.threads,
        |n| {
            let s = t0.elapsed().as_secs_f64().max(1e-3);
            // At most twice a second, and at the end.
            if tty && (s - shown >= 0.5 || n == g.image_bytes) {
                shown = s;
                let rate = n as f64 / s;
                eprint!(
                    "\r{:>6} of {} MiB, {:.0} MiB/s, {:.0} s left   ",
                    n >> 20,
                    g.image_bytes >> 20,
                    rate / 1048576.0,
                    (g.image_bytes - n) as f64 / rate
                );
            }
        },
    )?;
    out.into_inner().map_err(|e| e.into_error())?;
    target
        .file
        .sync_all()
        .context("fsync of the image target")?;
    if tty {
        eprintln!();
    }
    println!(
        "image: {} MiB of stream in {} MiB on {} ({:.2}x, {} zero pages not stored), snapshot {:.2} s, written in {:.2} s",
        g.image_bytes >> 20,
        totals.stored_bytes >> 20,
        target.path,
        g.image_bytes as f64 / (totals.stored_bytes + HEADER_LEN as u64) as f64,
        totals.zero_pages,
        snapshot_s,
        t0.elapsed().as_secs_f64()
    );
    if o.dry_run {
        let mut r = Reader::new(File::open(o.image)?, key)?;
        while r.next_chunk()?.is_some() {}
        drop(image);
        drop(freeze);
        println!(
            "dry run: the image on {} verified; freeze released, no power off",
            o.image
        );
        return Ok(());
    }
    println!("powering off");
    Err(sys::power_off()).context("power off")
}

/// Runs `hibsnap resume`: returns only if the image is not restored.
pub fn resume(image: &str, key: &Path) -> Result<()> {
    let key = load_key(key)?;
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("image {image}"))?;
    let mut r = Reader::new(std::io::BufReader::with_capacity(4 << 20, &dev), key)
        .with_context(|| format!("image {image}"))?;
    let h = r.header().clone();
    let release = sys::kernel_release()?;
    let build_id = sys::kernel_build_id();
    ensure!(
        h.release == release && h.build_id == build_id,
        "the image is of kernel {} (build id {}), this is {} (build id {}): not restored",
        h.release,
        hex(&h.build_id),
        release,
        hex(&build_id)
    );
    let t0 = Instant::now();
    let mut snap = OpenOptions::new()
        .write(true)
        .open("/dev/snapshot")
        .context("/dev/snapshot")?;
    snapshot_dev::ioctl(&snap, snapshot_dev::FREEZE).context("SNAPSHOT_FREEZE")?;
    let fed = (|| -> Result<()> {
        while let Some(chunk) = r.next_chunk()? {
            snap.write_all(&chunk).context("feeding /dev/snapshot")?;
        }
        Ok(())
    })();
    if let Err(e) = fed {
        let _ = snapshot_dev::ioctl(&snap, snapshot_dev::UNFREEZE);
        return Err(e.context(format!("image {image}: not restored")));
    }
    drop(r);
    // Never restored twice: the header's magic goes before control passes to the image.
    invalidate(&mut dev)?;
    println!(
        "hibsnap: {} MiB verified and loaded in {:.2} s, restoring",
        h.stream_bytes >> 20,
        t0.elapsed().as_secs_f64()
    );
    let err = snapshot_dev::ioctl(&snap, snapshot_dev::ATOMIC_RESTORE).err();
    let _ = snapshot_dev::ioctl(&snap, snapshot_dev::UNFREEZE);
    bail!("SNAPSHOT_ATOMIC_RESTORE failed: {err:?}")
}

/// Overwrites the container's magic, so that the image is never restored again.
fn invalidate(dev: &mut File) -> Result<()> {
    dev.seek(SeekFrom::Start(0))?;
    dev.write_all(&[0u8; 8])?;
    dev.sync_all().context("invalidating the image")
}

/// Runs `hibsnap inspect`.
pub fn inspect(image: &str, key: &Path) -> Result<()> {
    let key = load_key(key)?;
    let input = File::open(image).with_context(|| format!("image {image}"))?;
    let mut r = Reader::new(std::io::BufReader::with_capacity(4 << 20, input), key)
        .with_context(|| format!("image {image}"))?;
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
        "  user pages    cow {}, denied {}, pinned {}, swapcache {}, exclusive {}",
        g.cow_pages, g.denied_pages, g.pinned_pages, g.swapcache_pages, g.exclusive_pages
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
