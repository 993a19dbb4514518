// SPDX-License-Identifier: GPL-2.0
//! Images on a server: the client side of `tcp://IP:PORT[/NAME]` targets, and
//! `hibsnap serve`, which stores containers in a directory and serves them back.
//!
//! The protocol is one request a connection. The client sends a request line,
//! `HIBSNAP/1 VERB NAME\n`, and the server answers with a line, `OK ...\n` or
//! `ERR reason\n`:
//!
//! - `PUT`: the server answers `READY FREE_BYTES`, the client sends the container as frames
//!   (a little-endian `u32` length, then that many bytes; a frame of length 0 ends it), the
//!   server writes it to a temporary file, syncs it, renames it over `NAME` and answers
//!   `OK BYTES`. A connection lost before the last frame leaves the stored image as it was.
//! - `GET`: the server answers `OK BYTES`, then sends the bytes.
//! - `INVALIDATE`: the server overwrites the container's magic with zeros, syncs, answers `OK`.
//!
//! The server is storage only: it cannot read or forge an image (it has no key), and the
//! client checks every chunk's MAC, so a server that answers wrongly gets a refusal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::sys;

/// The protocol's version, the first word of every request.
const PROTOCOL: &str = "HIBSNAP/1";
/// The largest frame a client sends; more is a protocol error.
const MAX_FRAME: usize = 16 << 20;
/// The frames the client writes.
const FRAME: usize = 1 << 20;
/// The longest request or answer line.
const MAX_LINE: usize = 256;
/// The name when the target names none.
pub const DEFAULT_NAME: &str = "hibsnap";
/// How long the client waits for the server: a resume must not hang the boot.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A `tcp://IP:PORT[/NAME]` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The server's address.
    pub addr: SocketAddr,
    /// The image's name on the server.
    pub name: String,
}

/// Whether `name` may name an image on a server: 1 to 64 of `[A-Za-z0-9._-]`, no leading dot.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Remote {
    /// Parses `tcp://IP:PORT[/NAME]`; `None` if `target` is not a `tcp://` URL.
    pub fn parse(target: &str) -> Option<Result<Remote>> {
        let rest = target.strip_prefix("tcp://")?;
        Some((|| {
            let (addr, name) = rest.split_once('/').unwrap_or((rest, DEFAULT_NAME));
            let addr: SocketAddr = addr
                .parse()
                .ok()
                .filter(|a: &SocketAddr| a.port() != 0)
                .with_context(|| {
                    format!(
                        "{target}: want tcp://IP:PORT[/NAME], an IP address (a static \
                    binary has no resolver for names)"
                    )
                })?;
            ensure!(
                valid_name(name),
                "{target}: the name {name:?} is not 1 to 64 of A-Z a-z 0-9 . _ - (no leading dot)"
            );
            Ok(Remote {
                addr,
                name: name.to_string(),
            })
        })())
    }

    /// Connects and sends the request line for `verb`.
    fn request(&self, verb: &str) -> Result<(BufReader<TcpStream>, TcpStream)> {
        let addr = self.addr;
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("server {addr}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut w = s.try_clone()?;
        writeln!(w, "{PROTOCOL} {verb} {}", self.name)?;
        Ok((BufReader::new(s), w))
    }

    /// Starts an upload: the server is reachable and says how much room it has.
    pub fn put(&self) -> Result<Upload> {
        let (mut r, w) = self.request("PUT")?;
        let free = answer(&mut r, self.addr, "READY")?;
        Ok(Upload {
            r,
            w,
            buf: Vec::with_capacity(FRAME),
            bytes: 0,
            free: free.parse().context("server: a bad READY answer")?,
            addr: self.addr,
        })
    }

    /// Starts a download: the stored container's bytes, and their number.
    pub fn get(&self) -> Result<(impl Read, u64)> {
        let (mut r, _) = self.request("GET")?;
        let len: u64 = answer(&mut r, self.addr, "OK")?
            .parse()
            .context("server: a bad OK answer")?;
        Ok((r.take(len), len))
    }

    /// Invalidates the stored image: it is never restored again.
    pub fn invalidate(&self) -> Result<()> {
        let (mut r, _) = self.request("INVALIDATE")?;
        answer(&mut r, self.addr, "OK")?;
        Ok(())
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes, without its newline.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the line is cut short or too long",
        ));
    }
    String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// Reads the server's answer: what follows `want` on its line, or the server's error.
fn answer(r: &mut impl BufRead, addr: SocketAddr, want: &str) -> Result<String> {
    let line = read_line(r).with_context(|| format!("server {addr}: no answer"))?;
    let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
    if word == "ERR" {
        bail!("server {addr}: {rest}");
    }
    ensure!(word == want, "server {addr}: unexpected answer {line:?}");
    Ok(rest.to_string())
}

/// An image on its way to the server: write the container, then [`Upload::finish`].
pub struct Upload {
    r: BufReader<TcpStream>,
    w: TcpStream,
    buf: Vec<u8>,
    bytes: u64,
    free: u64,
    addr: SocketAddr,
}

impl Upload {
    /// The room the server said it has for the image.
    pub fn free(&self) -> u64 {
        self.free
    }

    fn send_frame(&mut self) -> io::Result<()> {
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Ends the upload: returns once the server has the image on stable storage.
    pub fn finish(mut self) -> Result<u64> {
        if !self.buf.is_empty() {
            self.send_frame()?;
        }
        self.w.write_all(&0u32.to_le_bytes())?;
        let stored: u64 = answer(&mut self.r, self.addr, "OK")?
            .parse()
            .context("server: a bad OK answer")?;
        ensure!(
            stored == self.bytes,
            "server {}: stored {stored} bytes of {}",
            self.addr,
            self.bytes
        );
        Ok(stored)
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(FRAME - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME {
            self.send_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `hibsnap serve`: stores images in `dir` and serves them, one thread a connection.
/// `log` gets a line for every request.
pub fn serve(listener: TcpListener, dir: &Path, log: fn(&str)) -> Result<()> {
    ensure!(
        std::fs::metadata(dir)
            .with_context(|| format!("{}", dir.display()))?
            .is_dir(),
        "{}: not a directory",
        dir.display()
    );
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let peer = conn
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            let mut w = match conn.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let result = handle(BufReader::new(conn), &mut w, &dir);
            match &result {
                Ok(what) => log(&format!("{peer}: {what}")),
                Err(e) => {
                    log(&format!("{peer}: {e:#}"));
                    let _ = writeln!(w, "ERR {}", format!("{e:#}").replace('\n', " "));
                }
            }
        });
    }
    Ok(())
}

/// A stored image's path, and that of its upload in progress.
fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.hibsnap")),
        dir.join(format!(".{name}.hibsnap.partial")),
    )
}

/// Serves one request; says what it did.
fn handle(mut r: BufReader<TcpStream>, w: &mut TcpStream, dir: &Path) -> Result<String> {
    r.get_ref().set_read_timeout(Some(TIMEOUT))?;
    let line = read_line(&mut r).context("request")?;
    let mut words = line.split(' ');
    let (proto, verb, name) = (words.next(), words.next(), words.next());
    ensure!(
        proto == Some(PROTOCOL) && words.next().is_none(),
        "a bad request {line:?}"
    );
    let name = name.filter(|n| valid_name(n)).context("a bad name")?;
    let (path, partial) = paths(dir, name);
    match verb {
        Some("PUT") => {
            writeln!(w, "READY {}", sys::free_bytes(dir)?)?;
            let mut out = File::create(&partial).context("creating the upload")?;
            let stored = receive(&mut r, &mut out).inspect_err(|_| {
                let _ = std::fs::remove_file(&partial);
            })?;
            out.sync_all()?;
            std::fs::rename(&partial, &path)?;
            File::open(dir)?.sync_all()?;
            writeln!(w, "OK {stored}")?;
            Ok(format!("stored {name}, {stored} bytes"))
        }
        Some("GET") => {
            let mut f = File::open(&path).with_context(|| format!("no image {name}"))?;
            let len = f.metadata()?.len();
            writeln!(w, "OK {len}")?;
            io::copy(&mut f, w).with_context(|| format!("sending {name}"))?;
            Ok(format!("sent {name}, {len} bytes"))
        }
        Some("INVALIDATE") => {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("no image {name}"))?;
            f.write_all_at(&[0; 8], 0)?;
            f.sync_all()?;
            writeln!(w, "OK")?;
            Ok(format!("invalidated {name}"))
        }
        _ => bail!("a bad request {line:?}"),
    }
}

/// Receives an upload's frames into `out`; the bytes, once the last frame came.
fn receive(r: &mut impl Read, out: &mut impl Write) -> Result<u64> {
    let mut buf = vec![0u8; FRAME];
    let mut total = 0u64;
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).context("the upload was cut short")?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            return Ok(total);
        }
        ensure!(len <= MAX_FRAME, "a frame of {len} bytes");
        if buf.len() < len {
            buf.resize(len, 0);
        }
        r.read_exact(&mut buf[..len])
            .context("the upload was cut short")?;
        out.write_all(&buf[..len])?;
        total += len as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> (String, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "hibsnap-serve-test-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(sys::random_bytes().unwrap())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let d = dir.clone();
        std::thread::spawn(move || serve(l, &d, |_| {}));
        (addr, dir)
    }

    #[test]
    fn urls() {
        let r = Remote::parse("tcp://10.0.2.2:7000/box-1.img")
            .unwrap()
            .unwrap();
        assert_eq!(r.addr.to_string(), "10.0.2.2:7000");
        assert_eq!(r.name, "box-1.img");
        let r = Remote::parse("tcp://[::1]:7000").unwrap().unwrap();
        assert_eq!(
            (r.addr.to_string().as_str(), r.name.as_str()),
            ("[::1]:7000", DEFAULT_NAME)
        );
        assert!(Remote::parse("/dev/vda").is_none());
        for bad in [
            "tcp://10.0.0.1",
            "tcp://10.0.0.1:0",
            "tcp://10.0.0.1:99999",
            "tcp://example.org:7000",
            "tcp://10.0.0.1:1/../etc",
            "tcp://10.0.0.1:1/.hidden",
            "tcp://10.0.0.1:1/",
            "tcp://10.0.0.1:1/a b",
        ] {
            assert!(Remote::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn put_get_invalidate() {
        let (addr, dir) = server();
        let r = Remote::parse(&format!("tcp://{addr}/t1")).unwrap().unwrap();
        let data: Vec<u8> = (0..3 * FRAME + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut up = r.put().unwrap();
        assert!(up.free() > 0);
        up.write_all(&data).unwrap();
        assert_eq!(up.finish().unwrap(), data.len() as u64);
        let (mut down, len) = r.get().unwrap();
        let mut back = Vec::new();
        down.read_to_end(&mut back).unwrap();
        assert_eq!((len, back == data), (data.len() as u64, true));
        r.invalidate().unwrap();
        let (mut down, _) = r.get().unwrap();
        back.clear();
        down.read_to_end(&mut back).unwrap();
        assert_eq!(&back[..8], &[0; 8]);
        assert_eq!(&back[8..], &data[8..]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_cut_upload_leaves_the_stored_image() {
        let (addr, dir) = server();
        let r = Remote::parse(&format!("tcp://{addr}/t2")).unwrap().unwrap();
        let mut up = r.put().unwrap();
        up.write_all(b"the first image").unwrap();
        up.finish().unwrap();
        let mut up = r.put().unwrap();
        up.write_all(&vec![7u8; FRAME + 1]).unwrap();
        drop(up);
        let (mut down, _) = r.get().unwrap();
        let mut back = Vec::new();
        down.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"the first image");
        let err = Remote::parse(&format!("tcp://{addr}/none"))
            .unwrap()
            .unwrap()
            .get()
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("no image none"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
