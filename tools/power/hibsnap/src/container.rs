// SPDX-License-Identifier: GPL-2.0
//! The image container: how `hibsnap hibernate` stores the stream that `snapshot_kernel(2)`
//! returns, and how `hibsnap resume` checks it before a byte of it reaches the kernel.
//!
//! All integers are little-endian. A container is:
//!
//! * a header of [`HEADER_LEN`] bytes: magic, format version, chunk size, codec, a random
//!   image id, the key id, the stream's length, the kernel's release and build id, the
//!   geometry of the image, and a MAC over all of it;
//! * chunks, in order from 0: each holds [`Header::chunk_size`] bytes of the stream (the last
//!   one fewer), as a record: index, raw length, stored length, a bitmap of the pages that are
//!   all zeros (never stored), the other pages compressed, and a MAC;
//! * a trailer: the index `u64::MAX`, the number of chunks, the raw and stored byte counts, a
//!   hash chaining the MACs of every chunk, and a MAC.
//!
//! Every MAC is keyed BLAKE3 with a key derived from the user's key, over the image id and
//! the record, so a chunk cannot be altered, moved to another index, taken from another image,
//! dropped or repeated, and the image cannot be truncated, without [`Reader`] failing.

use std::io::{self, Read, Write};

use anyhow::{bail, ensure, Context, Result};

use crate::uapi::Geometry;

/// The container's magic, at offset 0 of the header.
pub const MAGIC: [u8; 8] = *b"HIBSNAPC";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// The length of the header.
pub const HEADER_LEN: usize = 4096;
/// The page size of the stream.
pub const PAGE: usize = 4096;
/// The default chunk size: 1 MiB of stream. Small chunks keep the writer's memory small:
/// it is allocated after the atomic point, when little may be free.
pub const DEFAULT_CHUNK: u32 = 1 << 20;
/// The largest chunk size a reader accepts.
pub const MAX_CHUNK: u32 = 64 << 20;
const MAC_LEN: usize = 32;
/// The contexts the MAC keys are derived with (BLAKE3's `derive_key`).
const MAC_HEADER: &str = "hibsnap 2026 container header";
const MAC_CHUNK: &str = "hibsnap 2026 container chunk";
const TRAILER_INDEX: u64 = u64::MAX;
/// Header offsets.
const OFF_MAC: usize = HEADER_LEN - MAC_LEN;
const RELEASE_LEN: usize = 65;
const BUILD_ID_MAX: usize = 64;
const GEOMETRY_LEN: usize = core::mem::size_of::<Geometry>();

/// How the pages of a chunk are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// As they are.
    None,
    /// Compressed with zstd at the given level.
    Zstd(i32),
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd(_) => 1,
        }
    }

    fn from_id(id: u8) -> Result<Codec> {
        Ok(match id {
            0 => Codec::None,
            1 => Codec::Zstd(0),
            _ => bail!("unknown codec {id}"),
        })
    }

    /// The codec's name, as `hibsnap inspect` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd(_) => "zstd",
        }
    }
}

/// The key that authenticates an image: 32 bytes.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// A key from a key file's contents: 32 raw bytes, or 64 hexadecimal digits (with an
    /// optional newline).
    pub fn from_file_contents(data: &[u8]) -> Result<Key> {
        if data.len() == 32 {
            return Ok(Key(data.try_into().unwrap()));
        }
        let text = std::str::from_utf8(data).ok().map(str::trim);
        if let Some(hex) = text.filter(|t| t.len() == 64) {
            let mut key = [0u8; 32];
            for (i, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .context("the key file is neither 32 bytes nor 64 hexadecimal digits")?;
            }
            return Ok(Key(key));
        }
        bail!("the key file is neither 32 bytes nor 64 hexadecimal digits")
    }

    /// The key's id, stored in the header so that a wrong key is named as such: 16 bytes of
    /// a hash of the key, which tell nothing about it.
    pub fn id(&self) -> [u8; 16] {
        let hash = blake3::derive_key("hibsnap 2026 key id", &self.0);
        hash[..16].try_into().unwrap()
    }

    /// The MAC key for `purpose` (a `MAC_*` context), derived from the key: one key never
    /// serves two purposes.
    fn mac_key(&self, purpose: &'static str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }
}

/// The header of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub chunk_size: u32,
    pub codec: Codec,
    pub image_id: [u8; 16],
    pub key_id: [u8; 16],
    /// The length of the stream (the geometry's `image_bytes`).
    pub stream_bytes: u64,
    /// The kernel that took the image: `uname -r`.
    pub release: String,
    /// The kernel's build id (the GNU build id note of vmlinux), possibly empty.
    pub build_id: Vec<u8>,
    pub geometry: Geometry,
}

impl Header {
    fn encode(&self, key: &Key) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..20].copy_from_slice(&self.chunk_size.to_le_bytes());
        h[20] = self.codec.id();
        h[24..40].copy_from_slice(&self.image_id);
        h[40..56].copy_from_slice(&self.key_id);
        h[56..64].copy_from_slice(&self.stream_bytes.to_le_bytes());
        let release = self.release.as_bytes();
        let n = release.len().min(RELEASE_LEN - 1);
        h[64..64 + n].copy_from_slice(&release[..n]);
        let n = self.build_id.len().min(BUILD_ID_MAX);
        h[136] = n as u8;
        h[144..144 + n].copy_from_slice(&self.build_id[..n]);
        h[208..208 + GEOMETRY_LEN].copy_from_slice(&self.geometry.to_bytes());
        let mac = blake3::keyed_hash(&key.mac_key(MAC_HEADER), &h[..OFF_MAC]);
        h[OFF_MAC..].copy_from_slice(mac.as_bytes());
        h
    }

    fn decode(h: &[u8], key: &Key) -> Result<Header> {
        ensure!(h.len() == HEADER_LEN, "truncated header");
        ensure!(h[0..8] == MAGIC, "not a hibsnap image (no magic)");
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
        let version = u32_at(8);
        ensure!(
            version == VERSION,
            "image format version {version}, this tool reads {VERSION}"
        );
        ensure!(u32_at(12) as usize == HEADER_LEN, "bad header length");
        let key_id: [u8; 16] = h[40..56].try_into().unwrap();
        ensure!(
            key_id == key.id(),
            "the image was written with another key (key id {}, this key's is {})",
            hex(&key_id),
            hex(&key.id())
        );
        let mac = blake3::keyed_hash(&key.mac_key(MAC_HEADER), &h[..OFF_MAC]);
        ensure!(
            constant_time_eq(mac.as_bytes(), &h[OFF_MAC..]),
            "the header's MAC does not match: the image was altered"
        );
        let chunk_size = u32_at(16);
        ensure!(
            chunk_size != 0 && chunk_size % PAGE as u32 == 0 && chunk_size <= MAX_CHUNK,
            "bad chunk size {chunk_size}"
        );
        let release_end = h[64..64 + RELEASE_LEN]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(RELEASE_LEN);
        let build_id_len = usize::from(h[136]).min(BUILD_ID_MAX);
        Ok(Header {
            chunk_size,
            codec: Codec::from_id(h[20])?,
            image_id: h[24..40].try_into().unwrap(),
            key_id,
            stream_bytes: u64::from_le_bytes(h[56..64].try_into().unwrap()),
            release: String::from_utf8_lossy(&h[64..64 + release_end]).into_owned(),
            build_id: h[144..144 + build_id_len].to_vec(),
            geometry: Geometry::from_bytes(h[208..208 + GEOMETRY_LEN].try_into().unwrap()),
        })
    }

    fn pages_per_chunk(&self) -> usize {
        self.chunk_size as usize / PAGE
    }

    fn zero_map_len(&self) -> usize {
        self.pages_per_chunk().div_ceil(8)
    }
}

/// Rewrites a container's header: checks `old` (the header's [`HEADER_LEN`] bytes) with `key`,
/// lets `change` edit it, and returns it authenticated again with the same key. For tests of
/// `hibsnap resume` (an image that names another kernel) and for tools that relabel an image.
pub fn reseal_header(old: &[u8], key: &Key, change: impl FnOnce(&mut Header)) -> Result<Vec<u8>> {
    let mut header = Header::decode(old, key)?;
    change(&mut header);
    ensure!(header.key_id == key.id(), "the key id cannot change");
    Ok(header.encode(key))
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The fixed part of a chunk record: index, raw length, stored length.
const RECORD_FIXED: usize = 16;

/// Seals one chunk: `raw` is the chunk `index` of the stream. Independent of every other
/// chunk, so that chunks can be sealed on several threads and written in order.
pub fn seal_chunk(header: &Header, key: &Key, index: u64, raw: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        !raw.is_empty() && raw.len() <= header.chunk_size as usize && raw.len() % PAGE == 0,
        "chunk {index}: {} bytes, not whole pages of at most one chunk",
        raw.len()
    );
    let mut zero_map = vec![0u8; header.zero_map_len()];
    let mut pages = Vec::with_capacity(raw.len());
    for (i, page) in raw.chunks(PAGE).enumerate() {
        if page.iter().all(|&b| b == 0) {
            zero_map[i / 8] |= 1 << (i % 8);
        } else {
            pages.extend_from_slice(page);
        }
    }
    let stored = match header.codec {
        Codec::None => pages,
        Codec::Zstd(level) => zstd::bulk::compress(&pages, level).context("zstd")?,
    };
    let mut rec = Vec::with_capacity(RECORD_FIXED + zero_map.len() + stored.len() + MAC_LEN);
    rec.extend_from_slice(&index.to_le_bytes());
    rec.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    rec.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    rec.extend_from_slice(&zero_map);
    rec.extend_from_slice(&stored);
    let mac = chunk_mac(header, key, &rec);
    rec.extend_from_slice(&mac);
    Ok(rec)
}

fn chunk_mac(header: &Header, key: &Key, record: &[u8]) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(&key.mac_key(MAC_CHUNK));
    h.update(&header.image_id);
    h.update(record);
    *h.finalize().as_bytes()
}

/// Totals, checked against the trailer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub chunks: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// All-zero pages, never stored.
    pub zero_pages: u64,
}

/// Writes a container: the header, then sealed chunks in order, then the trailer.
pub struct Writer<W: Write> {
    out: W,
    header: Header,
    key: Key,
    chain: blake3::Hasher,
    totals: Totals,
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(mut out: W, header: Header, key: Key) -> Result<Writer<W>> {
        ensure!(header.key_id == key.id(), "the header names another key");
        out.write_all(&header.encode(&key))?;
        Ok(Writer {
            out,
            header,
            key,
            chain: blake3::Hasher::new(),
            totals: Totals::default(),
        })
    }

    /// The header written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Seals and writes the next chunk.
    pub fn write_chunk(&mut self, raw: &[u8]) -> Result<()> {
        let rec = seal_chunk(&self.header, &self.key, self.totals.chunks, raw)?;
        self.write_sealed(&rec)
    }

    /// Writes the next chunk, sealed by [`seal_chunk`] with the next index.
    pub fn write_sealed(&mut self, rec: &[u8]) -> Result<()> {
        let index = u64::from_le_bytes(rec[0..8].try_into().unwrap());
        ensure!(
            index == self.totals.chunks,
            "chunk {index} sealed out of order"
        );
        let raw_len = u32::from_le_bytes(rec[8..12].try_into().unwrap());
        let zeros: u32 = rec[RECORD_FIXED..RECORD_FIXED + self.header.zero_map_len()]
            .iter()
            .map(|b| b.count_ones())
            .sum();
        self.out.write_all(rec)?;
        self.chain.update(&rec[rec.len() - MAC_LEN..]);
        self.totals.chunks += 1;
        self.totals.raw_bytes += u64::from(raw_len);
        self.totals.stored_bytes += rec.len() as u64;
        self.totals.zero_pages += u64::from(zeros);
        Ok(())
    }

    /// Writes the trailer; returns the output and the totals.
    pub fn finish(mut self) -> Result<(W, Totals)> {
        ensure!(
            self.totals.raw_bytes == self.header.stream_bytes,
            "{} bytes written of a {}-byte stream",
            self.totals.raw_bytes,
            self.header.stream_bytes
        );
        let mut t = Vec::with_capacity(TRAILER_LEN);
        t.extend_from_slice(&TRAILER_INDEX.to_le_bytes());
        t.extend_from_slice(&self.totals.chunks.to_le_bytes());
        t.extend_from_slice(&self.totals.raw_bytes.to_le_bytes());
        t.extend_from_slice(&self.totals.stored_bytes.to_le_bytes());
        t.extend_from_slice(&self.totals.zero_pages.to_le_bytes());
        t.extend_from_slice(self.chain.finalize().as_bytes());
        let mac = chunk_mac(&self.header, &self.key, &t);
        t.extend_from_slice(&mac);
        self.out.write_all(&t)?;
        self.out.flush()?;
        Ok((self.out, self.totals))
    }
}

/// index, chunks, raw bytes, stored bytes, zero pages, chain, MAC.
const TRAILER_LEN: usize = 8 * 5 + 32 + MAC_LEN;

/// Reads a container, checking everything before it hands out a byte.
pub struct Reader<R: Read> {
    input: R,
    header: Header,
    key: Key,
    chain: blake3::Hasher,
    totals: Totals,
    done: bool,
}

fn read_exact_or(input: &mut impl Read, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            anyhow::anyhow!("the image is truncated: it ends in {}", what())
        } else {
            anyhow::Error::new(e).context(what())
        }
    })
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R, key: Key) -> Result<Reader<R>> {
        let mut h = vec![0u8; HEADER_LEN];
        read_exact_or(&mut input, &mut h, &|| "the header".into())?;
        let header = Header::decode(&h, &key)?;
        Ok(Reader {
            input,
            header,
            key,
            chain: blake3::Hasher::new(),
            totals: Totals::default(),
            done: false,
        })
    }

    /// The header, checked.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The totals so far (all of them once [`Reader::next_chunk`] returned `None`).
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The key the container is checked with.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The next chunk of the stream, checked; `None` after the trailer, once it checked too.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match self.next_record(Vec::new())? {
            Some(record) => record.open(&self.header, &self.key).map(Some),
            None => Ok(None),
        }
    }

    /// The next chunk's record as read into `buf` (its allocation reused when it is large
    /// enough), its place and lengths checked but not yet its MAC ([`Record::open`] checks
    /// that, on any thread); `None` after the trailer, once it checked too, against the
    /// records read before it.
    pub fn next_record(&mut self, buf: Vec<u8>) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let index = self.totals.chunks;
        let mut fixed = [0u8; RECORD_FIXED];
        read_exact_or(&mut self.input, &mut fixed[..8], &|| {
            format!("chunk {index}")
        })?;
        let got = u64::from_le_bytes(fixed[0..8].try_into().unwrap());
        if got == TRAILER_INDEX {
            self.read_trailer()?;
            return Ok(None);
        }
        ensure!(
            got == index,
            "chunk {index}: index {got} found there (reordered or spliced)"
        );
        read_exact_or(&mut self.input, &mut fixed[8..], &|| {
            format!("chunk {index}")
        })?;
        let raw_len = u32::from_le_bytes(fixed[8..12].try_into().unwrap()) as usize;
        let stored_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
        let chunk = self.header.chunk_size as usize;
        ensure!(
            raw_len != 0 && raw_len <= chunk && raw_len % PAGE == 0,
            "chunk {index}: bad length {raw_len}"
        );
        ensure!(
            stored_len <= max_stored_len(chunk),
            "chunk {index}: bad stored length {stored_len}"
        );
        let zmap_len = self.header.zero_map_len();
        let mut rec = buf;
        rec.clear();
        rec.extend_from_slice(&fixed);
        rec.resize(RECORD_FIXED + zmap_len + stored_len + MAC_LEN, 0);
        read_exact_or(&mut self.input, &mut rec[RECORD_FIXED..], &|| {
            format!("chunk {index}")
        })?;
        let record = Record {
            index,
            raw_len,
            rec,
        };
        // The totals and the chain take the record as stored: if any of it was altered, its
        // MAC fails when it is opened, and the image with it.
        self.chain.update(record.mac());
        self.totals.chunks += 1;
        self.totals.raw_bytes += raw_len as u64;
        self.totals.stored_bytes += record.rec.len() as u64;
        self.totals.zero_pages += record.zero_pages(&self.header) as u64;
        ensure!(
            self.totals.raw_bytes <= self.header.stream_bytes,
            "chunk {index}: the chunks hold more than the {}-byte stream",
            self.header.stream_bytes
        );
        Ok(Some(record))
    }

    fn read_trailer(&mut self) -> Result<()> {
        let mut t = [0u8; TRAILER_LEN];
        t[..8].copy_from_slice(&TRAILER_INDEX.to_le_bytes());
        read_exact_or(&mut self.input, &mut t[8..], &|| "the trailer".into())?;
        let body = TRAILER_LEN - MAC_LEN;
        let mac = chunk_mac(&self.header, &self.key, &t[..body]);
        ensure!(
            constant_time_eq(&mac, &t[body..]),
            "the trailer's MAC does not match: the image was altered"
        );
        let u64_at = |at: usize| u64::from_le_bytes(t[at..at + 8].try_into().unwrap());
        let want = Totals {
            chunks: u64_at(8),
            raw_bytes: u64_at(16),
            stored_bytes: u64_at(24),
            zero_pages: u64_at(32),
        };
        ensure!(
            want == self.totals,
            "the trailer's totals {want:?} differ from the chunks read {:?}",
            self.totals
        );
        ensure!(
            t[40..72] == *self.chain.finalize().as_bytes(),
            "the chunks are not the ones the trailer chains"
        );
        ensure!(
            self.totals.raw_bytes == self.header.stream_bytes,
            "the chunks hold {} bytes of a {}-byte stream",
            self.totals.raw_bytes,
            self.header.stream_bytes
        );
        self.done = true;
        Ok(())
    }
}

/// A chunk's record as [`Reader::next_record`] read it, not yet checked against its MAC.
pub struct Record {
    index: u64,
    raw_len: usize,
    rec: Vec<u8>,
}

impl Record {
    fn mac(&self) -> &[u8] {
        &self.rec[self.rec.len() - MAC_LEN..]
    }

    fn zero_map<'a>(&'a self, header: &Header) -> &'a [u8] {
        &self.rec[RECORD_FIXED..RECORD_FIXED + header.zero_map_len()]
    }

    fn zero_pages(&self, header: &Header) -> usize {
        let zero_map = self.zero_map(header);
        (0..self.raw_len / PAGE)
            .filter(|i| zero_map[i / 8] & (1 << (i % 8)) != 0)
            .count()
    }

    /// The record's buffer, for the next [`Reader::next_record`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.rec
    }

    /// Checks the record's MAC and returns its chunk of the stream: its pages decompressed,
    /// its zero pages filled in.
    pub fn open(&self, header: &Header, key: &Key) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        self.open_into(header, key, &mut Opener::new()?, &mut raw)?;
        Ok(raw)
    }

    /// What [`Record::open`] does, into `raw`, with `opener`'s memory: no allocation when
    /// `raw` and the opener's buffer are as large as a chunk (at most a record's
    /// stored length is reserved in the opener, and `raw`'s length is set to the chunk's).
    pub fn open_into(
        &self,
        header: &Header,
        key: &Key,
        opener: &mut Opener,
        raw: &mut Vec<u8>,
    ) -> Result<()> {
        let index = self.index;
        let body = self.rec.len() - MAC_LEN;
        let mac = chunk_mac(header, key, &self.rec[..body]);
        ensure!(
            constant_time_eq(&mac, self.mac()),
            "chunk {index}: the MAC does not match: the image was altered"
        );
        let zero_map = self.zero_map(header);
        let pages = self.raw_len / PAGE;
        let zeros = self.zero_pages(header);
        let stored = &self.rec[RECORD_FIXED + zero_map.len()..body];
        let want = (pages - zeros) * PAGE;
        let data = match header.codec {
            Codec::None => stored,
            Codec::Zstd(_) => {
                let out = &mut opener.pages;
                out.clear();
                out.reserve(want);
                // Decompresses into `out`'s capacity, never more: a longer chunk is an error.
                opener
                    .zstd
                    .decompress_to_buffer(stored, out)
                    .with_context(|| format!("chunk {index}: zstd"))?;
                &out[..]
            }
        };
        ensure!(
            data.len() == want,
            "chunk {index}: {} bytes of pages stored, {want} expected",
            data.len()
        );
        raw.clear();
        raw.resize(self.raw_len, 0);
        let mut from = data.chunks(PAGE);
        for (i, page) in raw.chunks_mut(PAGE).enumerate() {
            if zero_map[i / 8] & (1 << (i % 8)) == 0 {
                page.copy_from_slice(from.next().unwrap());
            }
        }
        Ok(())
    }
}

/// What a thread opening records keeps from one to the next: a zstd context and the
/// buffer its chunks' pages are decompressed into.
pub struct Opener {
    zstd: zstd::bulk::Decompressor<'static>,
    pages: Vec<u8>,
}

impl Opener {
    /// An opener with no buffer yet.
    pub fn new() -> Result<Opener> {
        Self::with_capacity(0)
    }

    /// An opener whose buffer takes chunks of up to `chunk` bytes, allocated and written now.
    pub fn with_capacity(chunk: usize) -> Result<Opener> {
        Ok(Opener {
            zstd: zstd::bulk::Decompressor::new().context("zstd")?,
            pages: filled(chunk),
        })
    }
}

/// An empty buffer of `capacity` bytes, each of them written once: its pages are in memory
/// now, not when a chunk first needs them. Not with zeros: a zeroed allocation can leave its
/// pages untouched.
pub fn filled(capacity: usize) -> Vec<u8> {
    let mut v = vec![0xa5; capacity];
    v.clear();
    v
}

/// The largest record a chunk of `chunk` bytes can take, with `header`'s zero-page bitmap.
pub fn max_record_len(header: &Header) -> usize {
    let chunk = header.chunk_size as usize;
    RECORD_FIXED + header.zero_map_len() + max_stored_len(chunk) + MAC_LEN
}

/// The largest stored length a reader accepts for chunks of `chunk` bytes: compressed data can
/// be a little larger than the data; more is damage.
fn max_stored_len(chunk: usize) -> usize {
    chunk + chunk / 64 + 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so that every run tests the same cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn key(n: u8) -> Key {
        Key::new([n; 32])
    }

    /// A stream of `pages` pages: every third page zero, the others compressible text with
    /// some noise.
    fn stream(pages: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed | 1);
        let mut s = vec![0u8; pages * PAGE];
        for (i, page) in s.chunks_mut(PAGE).enumerate() {
            if i % 3 == 2 {
                continue;
            }
            for (j, b) in page.iter_mut().enumerate() {
                *b = if j % 16 == 0 {
                    rng.next() as u8
                } else {
                    b"hibsnap "[j % 8]
                };
            }
        }
        s
    }

    fn header(codec: Codec, chunk_size: u32, stream_bytes: u64, k: &Key) -> Header {
        Header {
            chunk_size,
            codec,
            image_id: [7; 16],
            key_id: k.id(),
            stream_bytes,
            release: "7.3.4+".into(),
            build_id: vec![0xab; 20],
            geometry: Geometry {
                image_bytes: stream_bytes,
                page_size: PAGE as u32,
                ..Geometry::default()
            },
        }
    }

    fn write(s: &[u8], codec: Codec, chunk_size: u32, k: &Key) -> Vec<u8> {
        let mut w = Writer::new(
            Vec::new(),
            header(codec, chunk_size, s.len() as u64, k),
            k.clone(),
        )
        .unwrap();
        for c in s.chunks(chunk_size as usize) {
            w.write_chunk(c).unwrap();
        }
        w.finish().unwrap().0
    }

    fn read(img: &[u8], k: &Key) -> Result<Vec<u8>> {
        let mut r = Reader::new(img, k.clone())?;
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk()? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    #[test]
    fn round_trip_both_codecs() {
        let k = key(1);
        let s = stream(70, 1);
        for codec in [Codec::None, Codec::Zstd(3)] {
            let img = write(&s, codec, 16 * PAGE as u32, &k);
            assert_eq!(read(&img, &k).unwrap(), s);
            let mut r = Reader::new(&img[..], k.clone()).unwrap();
            while r.next_chunk().unwrap().is_some() {}
            assert_eq!(r.totals().chunks, 5);
            assert_eq!(r.totals().zero_pages, 23);
            assert_eq!(r.header().release, "7.3.4+");
            assert_eq!(r.header().build_id, vec![0xab; 20]);
            if codec != Codec::None {
                assert!(img.len() < s.len() / 4, "{} of {}", img.len(), s.len());
            }
        }
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn zero_pages_are_not_stored() {
        let k = key(1);
        let img = write(&vec![0u8; 64 * PAGE], Codec::None, 16 * PAGE as u32, &k);
        assert!(img.len() < HEADER_LEN + 4 * 200, "{}", img.len());
        assert_eq!(read(&img, &k).unwrap(), vec![0u8; 64 * PAGE]);
    }

    #[test]
    fn wrong_key_is_named() {
        let img = write(&stream(8, 2), Codec::Zstd(1), 4 * PAGE as u32, &key(1));
        let err = read(&img, &key(2)).unwrap_err().to_string();
        assert!(err.contains("another key"), "{err}");
    }

    #[test]
    fn every_flipped_byte_is_found() {
        let k = key(3);
        let s = stream(12, 3);
        let img = write(&s, Codec::Zstd(1), 4 * PAGE as u32, &k);
        for at in (0..img.len()).step_by(7).chain([img.len() - 1]) {
            let mut bad = img.clone();
            bad[at] ^= 0x40;
            assert!(read(&bad, &k).is_err(), "byte {at} flipped, read anyway");
        }
    }

    #[test]
    fn every_truncation_is_found() {
        let k = key(4);
        let img = write(&stream(12, 4), Codec::Zstd(1), 4 * PAGE as u32, &k);
        for len in (0..img.len()).step_by(13) {
            let err = read(&img[..len], &k).unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut at {len}: {err}");
        }
    }

    #[test]
    fn reordered_dropped_repeated_and_spliced_chunks_are_found() {
        let k = key(5);
        let s = stream(12, 5);
        let chunk = 4 * PAGE as u32;
        let h = header(Codec::None, chunk, s.len() as u64, &k);
        let recs: Vec<_> = s
            .chunks(chunk as usize)
            .enumerate()
            .map(|(i, c)| seal_chunk(&h, &k, i as u64, c).unwrap())
            .collect();
        let img = write(&s, Codec::None, chunk, &k);
        let body = |order: &[&Vec<u8>]| {
            let mut v = img[..HEADER_LEN].to_vec();
            for r in order {
                v.extend_from_slice(r);
            }
            v.extend_from_slice(&img[img.len() - TRAILER_LEN..]);
            v
        };
        assert_eq!(read(&body(&[&recs[0], &recs[1], &recs[2]]), &k).unwrap(), s);
        for order in [
            vec![&recs[1], &recs[0], &recs[2]],
            vec![&recs[0], &recs[2]],
            vec![&recs[0], &recs[1], &recs[1], &recs[2]],
            vec![&recs[0], &recs[1]],
        ] {
            assert!(read(&body(&order), &k).is_err());
        }
        // A chunk of another image with the same key, at the same index.
        let mut other = h.clone();
        other.image_id = [8; 16];
        let foreign = seal_chunk(&other, &k, 1, &s[chunk as usize..2 * chunk as usize]).unwrap();
        let err = read(&body(&[&recs[0], &foreign, &recs[2]]), &k).unwrap_err();
        assert!(err.to_string().contains("MAC"), "{err}");
    }

    #[test]
    fn a_resealed_header_reads_with_its_change() {
        let k = key(7);
        let s = stream(8, 7);
        let mut img = write(&s, Codec::Zstd(1), 4 * PAGE as u32, &k);
        let new =
            reseal_header(&img[..HEADER_LEN], &k, |h| h.release = "0.0.0-other".into()).unwrap();
        img[..HEADER_LEN].copy_from_slice(&new);
        let r = Reader::new(&img[..], k.clone()).unwrap();
        assert_eq!(r.header().release, "0.0.0-other");
        assert_eq!(read(&img, &k).unwrap(), s);
        assert!(reseal_header(&img[..HEADER_LEN], &key(8), |_| {}).is_err());
    }

    #[test]
    fn key_file_forms() {
        assert_eq!(Key::from_file_contents(&[9; 32]).unwrap().id(), key(9).id());
        let hex_key = "09".repeat(32) + "\n";
        assert_eq!(
            Key::from_file_contents(hex_key.as_bytes()).unwrap().id(),
            key(9).id()
        );
        assert!(Key::from_file_contents(b"short").is_err());
        assert!(Key::from_file_contents("zz".repeat(32).as_bytes()).is_err());
    }

    /// A bounded fuzz run of the parser: random inputs, and valid images with random bytes
    /// changed, cut or inserted. The reader must never panic, and must never return a stream
    /// other than the one written.
    #[test]
    fn fuzz_the_reader() {
        let k = key(6);
        let s = stream(10, 6);
        let img = write(&s, Codec::Zstd(1), 4 * PAGE as u32, &k);
        let mut rng = Rng(0x1b5a_9c3e);
        for round in 0..3000 {
            let input = match round % 4 {
                0 => {
                    let mut v = vec![0u8; rng.below(3 * HEADER_LEN)];
                    v.iter_mut().for_each(|b| *b = rng.next() as u8);
                    if rng.below(2) == 0 && v.len() >= 8 {
                        v[..8].copy_from_slice(&MAGIC);
                    }
                    v
                }
                1 => {
                    let mut v = img.clone();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(v.len());
                        v[at] = rng.next() as u8;
                    }
                    v
                }
                2 => img[..rng.below(img.len())].to_vec(),
                _ => {
                    let mut v = img.clone();
                    let at = rng.below(v.len());
                    let n = rng.below(64);
                    v.splice(at..at, (0..n).map(|_| rng.next() as u8));
                    v
                }
            };
            if let Ok(out) = read(&input, &k) {
                assert_eq!(
                    out, s,
                    "round {round}: a changed image read as another stream"
                );
            }
        }
    }
}
