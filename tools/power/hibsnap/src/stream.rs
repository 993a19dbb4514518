// SPDX-License-Identifier: GPL-2.0
//! Streaming an image into a container, sealing chunks on several threads while one thread
//! reads and one writes, in order.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, Context, Result};

use crate::container::{seal_chunk, Header, Key, Totals, Writer};

/// Fills `buf` from `input` as far as it goes; returns how much it read (less only at the end).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The memory [`write_container`] uses at most, in bytes, with chunks of `chunk` bytes on
/// `threads` threads, and a writer buffer of `buffer` bytes: a chunk being read, one queued
/// and one sealed a thread, the reordered ones waiting for their turn, a thread's chunk, its
/// output and its compressor's context (about a chunk and a half), and the buffer.
pub fn working_set(chunk: u64, threads: usize, buffer: u64) -> u64 {
    let t = threads.max(1) as u64;
    chunk * (1 + t + t + t + t * 7 / 2) + buffer
}

/// Reads the stream from `input` to its end and writes it to `out` as a container, sealing
/// chunks on `threads` threads. `progress` is called with the stream bytes read so far.
pub fn write_container<R: Read, W: Write + Send>(
    mut input: R,
    out: W,
    header: Header,
    key: &Key,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<(W, Totals)> {
    let chunk = header.chunk_size as usize;
    let threads = threads.max(1);
    let writer = Writer::new(out, header.clone(), key.clone())?;
    std::thread::scope(|s| {
        let (raw_tx, raw_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads);
        let raw_rx = Arc::new(Mutex::new(raw_rx));
        let (sealed_tx, sealed_rx) = mpsc::sync_channel::<(u64, Result<Vec<u8>>)>(threads);
        for _ in 0..threads {
            let raw_rx = Arc::clone(&raw_rx);
            let sealed_tx = sealed_tx.clone();
            let (header, key) = (&header, key);
            s.spawn(move || loop {
                let next = raw_rx.lock().unwrap().recv();
                let Ok((index, raw)) = next else { break };
                if sealed_tx
                    .send((index, seal_chunk(header, key, index, &raw)))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(sealed_tx);
        let write = s.spawn(move || -> Result<(W, Totals)> {
            let mut writer = writer;
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            for (index, sealed) in sealed_rx {
                pending.insert(index, sealed);
                while let Some(sealed) = pending.remove(&next) {
                    writer.write_sealed(&sealed?)?;
                    next += 1;
                }
            }
            anyhow::ensure!(pending.is_empty(), "chunks lost on the way");
            writer.finish()
        });
        let mut total = 0u64;
        let mut index = 0u64;
        let read = loop {
            let mut raw = vec![0u8; chunk];
            let n = match read_full(&mut input, &mut raw) {
                Ok(n) => n,
                Err(e) => break Err(anyhow!(e).context("reading the image")),
            };
            if n == 0 {
                break Ok(());
            }
            raw.truncate(n);
            total += n as u64;
            progress(total);
            // The writer has failed if the workers are gone: its error says why.
            if raw_tx.send((index, raw)).is_err() {
                break Ok(());
            }
            index += 1;
        };
        drop(raw_tx);
        let written = write
            .join()
            .map_err(|_| anyhow!("the writer thread panicked"))?;
        read?;
        written.context("writing the image")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Codec, Reader, PAGE};
    use crate::uapi::Geometry;

    #[test]
    fn threads_write_what_one_reads() {
        let key = Key::new([3; 32]);
        let mut s = vec![0u8; 300 * PAGE];
        for (i, b) in s.iter_mut().enumerate() {
            if (i / PAGE) % 5 != 0 {
                *b = (i * 7 / 3) as u8;
            }
        }
        for threads in [1, 3, 8] {
            let header = Header {
                chunk_size: 16 * PAGE as u32,
                codec: Codec::Zstd(1),
                image_id: [1; 16],
                key_id: key.id(),
                stream_bytes: s.len() as u64,
                release: "test".into(),
                build_id: vec![],
                geometry: Geometry::default(),
            };
            let mut seen = 0;
            let (img, totals) =
                write_container(&s[..], Vec::new(), header, &key, threads, |n| seen = n).unwrap();
            assert_eq!(seen, s.len() as u64);
            assert_eq!(totals.chunks, 19);
            let mut r = Reader::new(&img[..], key.clone()).unwrap();
            let mut back = Vec::new();
            while let Some(c) = r.next_chunk().unwrap() {
                back.extend_from_slice(&c);
            }
            assert_eq!(back, s, "{threads} threads");
        }
    }

    #[test]
    fn a_short_stream_fails() {
        let key = Key::new([3; 32]);
        let header = Header {
            chunk_size: 4 * PAGE as u32,
            codec: Codec::None,
            image_id: [1; 16],
            key_id: key.id(),
            stream_bytes: 10 * PAGE as u64,
            release: "test".into(),
            build_id: vec![],
            geometry: Geometry::default(),
        };
        let s = vec![1u8; 6 * PAGE];
        let err = write_container(&s[..], Vec::new(), header, &key, 2, |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("of a"), "{err:#}");
    }
}
