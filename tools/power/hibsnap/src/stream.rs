// SPDX-License-Identifier: GPL-2.0
//! Streaming an image into a container, sealing chunks on several threads while one thread
//! reads and one writes, in order; and back out of one, opening chunks on several threads
//! while one thread reads and the caller takes them, in order.

use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, Context, Result};

use crate::container::{
    filled, max_record_len, seal_chunk, Header, Key, Opener, Reader, Record, Totals, Writer,
};

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

/// The stack of each thread: `mlockall(MCL_FUTURE)` puts all of it in memory when the thread
/// starts, and compressing, hashing and moving chunks (on the heap) need little of it.
const THREAD_STACK: usize = 256 << 10;

/// Starts `f` on a thread of `s` with a stack of [`THREAD_STACK`] bytes.
fn spawn<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn_scoped(s, f)
        .expect("a thread of the image's pipeline could not start")
}

/// Items, and results, with their sequence numbers.
type Numbered<T> = (u64, T);

/// Starts `threads` workers in `s`, each applying its own `make()` to each item sent, with its
/// sequence number, to the returned sender, and sending the results, with theirs, to the
/// returned receiver, in any order ([`in_order`] puts them back). The workers hold the only
/// receiver of items: once the results' receiver is gone they end, and a send of items fails
/// instead of waiting forever.
fn workers<'scope, I: Send + 'scope, O: Send + 'scope, W: FnMut(I) -> O + Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    threads: usize,
    make: impl Fn() -> W,
) -> (mpsc::SyncSender<Numbered<I>>, mpsc::Receiver<Numbered<O>>) {
    let (item_tx, item_rx) = mpsc::sync_channel::<Numbered<I>>(threads);
    let item_rx = Arc::new(Mutex::new(item_rx));
    let (result_tx, result_rx) = mpsc::sync_channel::<Numbered<O>>(threads);
    for _ in 0..threads {
        let item_rx = Arc::clone(&item_rx);
        let result_tx = result_tx.clone();
        let mut work = make();
        spawn(s, move || loop {
            let next = item_rx.lock().unwrap().recv();
            let Ok((seq, item)) = next else { break };
            if result_tx.send((seq, work(item))).is_err() {
                break;
            }
        });
    }
    (item_tx, result_rx)
}

/// Takes the results of [`workers`] in their sequence order; the first error of `take` ends it.
/// `in_flight` is how many results there can be at once, usually: those that come before
/// their turn wait in a list allocated for that many, and grown only if there are more.
fn in_order<O>(
    results: mpsc::Receiver<Numbered<O>>,
    in_flight: usize,
    mut take: impl FnMut(O) -> Result<()>,
) -> Result<()> {
    let mut pending = Vec::with_capacity(in_flight);
    let mut next = 0u64;
    for (seq, result) in results {
        pending.push((seq, result));
        while let Some(at) = pending.iter().position(|&(seq, _)| seq == next) {
            take(pending.swap_remove(at).1)?;
            next += 1;
        }
    }
    anyhow::ensure!(pending.is_empty(), "chunks lost on the way");
    Ok(())
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
    let mut writer = Writer::new(out, header.clone(), key.clone())?;
    let seal = |(index, raw): (u64, Vec<u8>)| seal_chunk(&header, key, index, &raw);
    std::thread::scope(|s| {
        let (raw_tx, sealed_rx) = workers(s, threads, || seal);
        let write = spawn(s, move || -> Result<(W, Totals)> {
            in_order(sealed_rx, 3 * threads, |sealed| {
                writer.write_sealed(&sealed?)
            })?;
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
            if raw_tx.send((index, (index, raw))).is_err() {
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

/// The buffers [`read_container`] reads and opens chunks in, with `threads` threads: a
/// record and its chunk for the reader, one for each thread and one waiting for each, and
/// one for the caller, which takes them in order. Fewer would leave a thread idle; each is
/// two chunks of memory that the next boot's loader cannot have.
fn read_buffers(threads: usize) -> usize {
    2 * threads + 2
}

/// Reads the container behind `reader` to its end, opening (checking and decompressing)
/// chunks on `threads` threads while one thread reads, and hands each chunk of the stream to
/// `take`, in order, on the calling thread: what [`Reader::next_chunk`] does, in parallel.
/// Returns the totals once the trailer checked; the first error (of `take`, or the
/// container's, in the stream's order) ends it.
///
/// Its memory is allocated, and written, before the first chunk is read, and used again and
/// again: `hibsnap resume` feeds the kernel's loader, which takes all the memory the image
/// needs at once, and a page fault of the tool's after that could find none free.
pub fn read_container<R: Read + Send>(
    mut reader: Reader<R>,
    threads: usize,
    mut take: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Totals> {
    let threads = threads.max(1);
    let header = reader.header().clone();
    let key = reader.key().clone();
    let chunk = header.chunk_size as usize;
    // The free buffers, a record's and a chunk's; the reader takes them in the stream's order,
    // so the chunk the caller waits for never waits for a buffer.
    let (free_tx, free_rx) = mpsc::sync_channel(read_buffers(threads));
    for _ in 0..read_buffers(threads) {
        free_tx
            .send((filled(max_record_len(&header)), filled(chunk)))
            .expect("the receiver is here");
    }
    let openers = (0..threads)
        .map(|_| Opener::with_capacity(chunk))
        .collect::<Result<Vec<_>>>()?;
    let openers = Mutex::new(openers);
    let (header, key) = (&header, &key);
    let open = || {
        let mut opener = openers.lock().unwrap().pop().expect("one opener a thread");
        move |(record, mut raw): (Result<Record>, Vec<u8>)| -> Result<(Vec<u8>, Vec<u8>)> {
            let record = record?;
            record.open_into(header, key, &mut opener, &mut raw)?;
            Ok((record.into_buffer(), raw))
        }
    };
    std::thread::scope(|s| {
        let (record_tx, raw_rx) = workers(s, threads, open);
        // The reader's errors travel in the stream's order too; it returns the totals only
        // after the trailer checked. It ends when the caller is gone, with the free buffers'
        // sender.
        let read = spawn(s, move || -> Option<Totals> {
            let mut seq = 0u64;
            while let Ok((buf, raw)) = free_rx.recv() {
                let (record, end) = match reader.next_record(buf) {
                    Ok(Some(record)) => (Ok(record), false),
                    Ok(None) => return Some(reader.totals().clone()),
                    Err(e) => (Err(e), true),
                };
                if record_tx.send((seq, (record, raw))).is_err() || end {
                    return None;
                }
                seq += 1;
            }
            None
        });
        let taken = in_order(raw_rx, read_buffers(threads), |opened| {
            let (buf, raw) = opened?;
            take(&raw)?;
            // The reader may be gone already, with the trailer read.
            let _ = free_tx.send((buf, raw));
            Ok(())
        });
        drop(free_tx);
        let totals = read
            .join()
            .map_err(|_| anyhow!("the reader thread panicked"))?;
        taken?;
        totals.ok_or_else(|| anyhow!("the image ended before its trailer"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Codec, Reader, PAGE};
    use crate::uapi::Geometry;

    fn test_header(key: &Key, chunk_size: u32, codec: Codec, stream_bytes: u64) -> Header {
        Header {
            chunk_size,
            codec,
            image_id: [1; 16],
            key_id: key.id(),
            stream_bytes,
            release: "test".into(),
            build_id: vec![],
            geometry: Geometry::default(),
        }
    }

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
            let header = test_header(&key, 16 * PAGE as u32, Codec::Zstd(1), s.len() as u64);
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
            let mut parallel = Vec::new();
            let r = Reader::new(&img[..], key.clone()).unwrap();
            let read = read_container(r, threads, |c| {
                parallel.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            assert_eq!(read, totals);
            assert_eq!(parallel, s, "{threads} threads, read in parallel");
        }
    }

    #[test]
    fn a_parallel_read_stops_at_the_first_bad_chunk() {
        let key = Key::new([3; 32]);
        let s: Vec<u8> = (0..64 * PAGE).map(|i| (i * 13 / 7) as u8).collect();
        let header = test_header(&key, 4 * PAGE as u32, Codec::Zstd(1), s.len() as u64);
        let (img, _) = write_container(&s[..], Vec::new(), header, &key, 2, |_| {}).unwrap();
        // A byte in the middle of the image, then the image cut short.
        let mut altered = img.clone();
        let mid = altered.len() / 2;
        altered[mid] ^= 1;
        let cut = &img[..mid + 10];
        for (bad, want) in [(&altered[..], "MAC does not match"), (cut, "truncated")] {
            for threads in [1, 4] {
                let mut taken = Vec::new();
                let r = Reader::new(bad, key.clone()).unwrap();
                let err = read_container(r, threads, |c| {
                    taken.extend_from_slice(c);
                    Ok(())
                })
                .unwrap_err();
                assert!(format!("{err:#}").contains(want), "{err:#}");
                // Only whole chunks before the bad one, in order.
                assert!(
                    taken.len() < s.len() && s.starts_with(&taken),
                    "{threads} threads"
                );
            }
        }
        // The caller's own error ends it too.
        let r = Reader::new(&img[..], key.clone()).unwrap();
        let mut n = 0;
        let err = read_container(r, 3, |_| {
            n += 1;
            anyhow::ensure!(n < 5, "enough");
            Ok(())
        })
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "enough");
        assert_eq!(n, 5);
    }

    /// A target that takes `left` bytes, then fails, as a full disk or a cut connection does.
    #[derive(Debug)]
    struct FailsAfter {
        left: usize,
    }

    impl std::io::Write for FailsAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::other("no space left"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_target_ends_the_write() {
        let key = Key::new([3; 32]);
        let s: Vec<u8> = (0..256 * PAGE).map(|i| (i * 13 / 7) as u8).collect();
        for threads in [1, 4] {
            let header = test_header(&key, PAGE as u32, Codec::None, s.len() as u64);
            let target = FailsAfter { left: 8 * PAGE };
            let err = write_container(&s[..], target, header, &key, threads, |_| {}).unwrap_err();
            assert!(format!("{err:#}").contains("no space left"), "{err:#}");
        }
    }

    #[test]
    fn a_short_stream_fails() {
        let key = Key::new([3; 32]);
        let header = test_header(&key, 4 * PAGE as u32, Codec::None, 10 * PAGE as u64);
        let s = vec![1u8; 6 * PAGE];
        let err = write_container(&s[..], Vec::new(), header, &key, 2, |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("of a"), "{err:#}");
    }
}
