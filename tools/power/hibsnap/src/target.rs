// SPDX-License-Identifier: GPL-2.0
//! Where an image goes and comes from: a block device, or a server (`tcp://IP:PORT[/NAME]`,
//! see `hibsnap::remote`).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

use anyhow::{bail, ensure, Context, Result};

use hibsnap::remote::{Remote, Upload};

/// The buffer between the container and a disk, in either direction.
pub const WRITE_BUFFER: u64 = 1 << 20;

/// An image target, checked before the freeze.
pub enum Target {
    /// A block device: not mounted, not swap, not a dm-hibsnap device.
    Disk { path: String, file: File, size: u64 },
    /// A file or device to read an image from (resume, inspect), unchecked.
    File { path: String, file: File },
    /// A server.
    Server(Remote),
}

/// The checks of a block device that is to take an image.
fn check_disk(path: &str) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("image target {path}"))?;
    ensure!(
        meta.file_type().is_block_device(),
        "image target {path}: not a block device"
    );
    let rdev = meta.rdev();
    let dev = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
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
    let is_it = |s: &str| std::fs::metadata(s).is_ok_and(|m| m.rdev() == rdev);
    ensure!(
        !swaps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .any(is_it),
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
            "image target {path} is a dm-hibsnap device: its writes stay in RAM during a \
                snapshot; use the device under it, or another"
        );
    }
    Ok(())
}

impl Target {
    /// A target for `hibsnap hibernate`, checked: a block device that can take an image, or
    /// a server that answers.
    pub fn for_writing(target: &str) -> Result<(Target, Sink)> {
        if let Some(remote) = Remote::parse(target) {
            let remote = remote?;
            let up = remote.put()?;
            return Ok((Target::Server(remote), Sink::Server(up)));
        }
        check_disk(target)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .with_context(|| format!("image target {target}"))?;
        let size = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        let sink = Sink::Disk(BufWriter::with_capacity(
            WRITE_BUFFER as usize,
            file.try_clone()?,
        ));
        let path = target.to_string();
        Ok((Target::Disk { path, file, size }, sink))
    }

    /// A target to read an image from: a server, or a device or file.
    pub fn for_reading(target: &str) -> Result<Target> {
        if let Some(remote) = Remote::parse(target) {
            return Ok(Target::Server(remote?));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .or_else(|_| File::open(target))
            .with_context(|| format!("image {target}"))?;
        Ok(Target::File {
            path: target.to_string(),
            file,
        })
    }

    /// The image's bytes, from their start: from a block device with `O_DIRECT`, so that
    /// reading it takes no page cache (see [`DirectReader`]).
    pub fn reader(&self) -> Result<Box<dyn Read + Send + '_>> {
        Ok(match self {
            Target::Disk { path, file, .. } | Target::File { path, file } => {
                if file.metadata()?.file_type().is_block_device() {
                    return Ok(Box::new(DirectReader::open(path)?));
                }
                let mut f = file;
                f.seek(SeekFrom::Start(0))?;
                Box::new(BufReader::with_capacity(WRITE_BUFFER as usize, f))
            }
            Target::Server(remote) => Box::new(remote.get()?.0),
        })
    }

    /// Makes the image unrestorable: its magic is overwritten, on stable storage.
    pub fn invalidate(&self) -> Result<()> {
        match self {
            Target::Disk { file, .. } | Target::File { file, .. } => {
                file.write_all_at(&[0u8; 8], 0)?;
                file.sync_all()?;
            }
            Target::Server(remote) => remote.invalidate()?,
        }
        Ok(())
    }
}

/// The alignment `O_DIRECT` asks of buffers and offsets, a multiple of any logical block size.
const DIRECT_ALIGN: usize = 4096;

/// A block device read from its start with `O_DIRECT`, through one buffer of [`WRITE_BUFFER`]
/// bytes allocated when it is opened. `hibsnap resume` reads the image while the kernel's
/// loader holds the memory of all of it: then a page cache page may not be had (the read
/// fails with `ENOMEM`), and this reader needs none.
pub struct DirectReader {
    file: File,
    /// [`WRITE_BUFFER`] bytes from `start` on are aligned to [`DIRECT_ALIGN`].
    buf: Vec<u8>,
    start: usize,
    /// The bytes of the buffer read and not yet taken: `pos..len`.
    pos: usize,
    len: usize,
    /// Where the next read of the device starts.
    offset: u64,
}

impl DirectReader {
    /// Opens `path`, a block device, for reading with `O_DIRECT`.
    pub fn open(path: &str) -> Result<DirectReader> {
        use std::os::unix::fs::OpenOptionsExt;

        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .with_context(|| format!("image {path} (O_DIRECT)"))?;
        let buf = vec![0; WRITE_BUFFER as usize + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Ok(DirectReader {
            file,
            buf,
            start,
            pos: 0,
            len: 0,
            offset: 0,
        })
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.len {
            let buf = &mut self.buf[self.start..self.start + WRITE_BUFFER as usize];
            // Whole buffers at aligned offsets: only the device's end makes a read short.
            let n = self.file.read_at(buf, self.offset)?;
            self.offset += n as u64;
            (self.pos, self.len) = (0, n);
        }
        let n = out.len().min(self.len - self.pos);
        let at = self.start + self.pos;
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n;
        Ok(n)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Disk { path, .. } | Target::File { path, .. } => f.write_str(path),
            Target::Server(r) => write!(f, "tcp://{}/{}", r.addr, r.name),
        }
    }
}

/// Where `hibsnap hibernate` writes the container.
pub enum Sink {
    Disk(BufWriter<File>),
    Server(Upload),
}

impl Sink {
    /// The bytes the target has room for.
    pub fn room(&self, target: &Target) -> u64 {
        match (self, target) {
            (Sink::Server(up), _) => up.free(),
            (_, Target::Disk { size, .. }) => *size,
            _ => 0,
        }
    }

    /// Ends the write: returns once the image is on stable storage.
    pub fn finish(self) -> Result<()> {
        match self {
            Sink::Disk(w) => {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                file.sync_all().context("fsync of the image target")
            }
            Sink::Server(up) => up.finish().map(|_| ()),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Disk(w) => w.write(data),
            Sink::Server(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Disk(w) => w.flush(),
            Sink::Server(w) => w.flush(),
        }
    }
}
