// SPDX-License-Identifier: GPL-2.0

//! The image file descriptor that `snapshot_kernel(2)` returns.
//!
//! `read(2)` streams the image in the format of `/dev/snapshot`, many pages per call;
//! `ioctl(HIBSNAP_IOC_GEOMETRY)` tells its size by kind of page; `poll(2)` always finds it
//! readable; it cannot be seeked. The image does not depend on the freeze: it holds the contents
//! of the atomic point whatever runs or writes afterwards, until it is closed or, if the system
//! runs out of memory meanwhile, dropped (reads then fail with `ENOMEM`). The last close ends
//! the image: the dm-hibsnap snapshot is merged back (nothing written meanwhile is lost), then
//! the references on the pages read in place are dropped and the image's memory freed.

use crate::{
    put_ne,
    snapshot::Kept, //
};
use core::mem::{
    offset_of,
    size_of, //
};
use kernel::{
    anon_inode::{
        self,
        AnonInodeFile, //
    },
    ioctl::_IOR,
    iov::IovIterDest,
    new_mutex,
    page::PAGE_SIZE,
    power::{
        Geometry,
        LiveImage, //
    },
    prelude::*,
    sync::Mutex,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi, //
};

/// `HIBSNAP_IOC_GEOMETRY`.
const IOC_GEOMETRY: u32 = _IOR::<uapi::hibsnap_geometry>(uapi::HIBSNAP_IOC_MAGIC, 0x01);

/// The most pages one copy takes: a huge page of 2 MiB with 4 KiB pages.
const MAX_RUN: usize = 512;

/// Where a reader is in the stream.
struct Stream {
    image: LiveImage,
    /// Bytes of the current pages already read; once all are, the next read moves on.
    offset: usize,
    /// The stream has ended: later reads return 0.
    ended: bool,
}

/// The object behind an image file descriptor.
#[pin_data]
pub(crate) struct Image {
    /// Dropped first: the block devices are merged back and swap written again before the pages
    /// go.
    kept: Option<Kept>,
    /// The image, `None` in a restored system (where it has already been released).
    #[pin]
    stream: Mutex<Option<Stream>>,
    geometry: Geometry,
    resumed: bool,
}

/// What an image file descriptor stands for.
pub(crate) enum Origin {
    /// An image just taken, and what stays in place while it is open.
    Taken(LiveImage, Kept),
    /// A system just restored from an image, which the restored kernel has already released.
    Restored,
}

impl Image {
    /// The object for an image file descriptor, with the image's `geometry`.
    pub(crate) fn new(origin: Origin, geometry: Geometry) -> impl PinInit<Self, Error> {
        let (stream, kept, resumed) = match origin {
            Origin::Taken(image, kept) => {
                let stream = Stream {
                    image,
                    offset: 0,
                    ended: false,
                };
                (Some(stream), Some(kept), false)
            }
            Origin::Restored => (None, None, true),
        };
        try_pin_init!(Image {
            kept,
            stream <- new_mutex!(stream),
            geometry,
            resumed,
        }? Error)
    }

    /// The geometry in its UAPI layout, native-endian; `now` is the image's geometry now, whose
    /// `dropped` and `cbw` change while it is open.
    fn geometry_bytes(&self, now: Option<Geometry>) -> [u8; size_of::<uapi::hibsnap_geometry>()] {
        let mut flags = 0;
        if self.resumed {
            flags |= uapi::HIBSNAP_GEOMETRY_RESUMED;
        }
        let mut geometry = self.geometry;
        if let Some(now) = now {
            geometry.dropped = now.dropped;
            geometry.cbw = now.cbw;
        }
        if geometry.dropped {
            flags |= uapi::HIBSNAP_GEOMETRY_DROPPED;
        }
        let image_bytes = if self.resumed {
            0
        } else {
            geometry.image_bytes()
        };
        uapi_geometry(&geometry, image_bytes, flags)
    }
}

/// `struct hibsnap_geometry` as bytes, each field put at its offset in the UAPI struct.
fn uapi_geometry(
    geo: &Geometry,
    image_bytes: usize,
    flags: u32,
) -> [u8; size_of::<uapi::hibsnap_geometry>()] {
    type G = uapi::hibsnap_geometry;
    let mut out = [0u8; size_of::<G>()];
    let mut put = |offset: usize, bytes: &[u8]| put_ne(&mut out, offset, bytes);
    let pages = [
        (offset_of!(G, copied_pages), geo.copied),
        (offset_of!(G, streamed_pages), geo.streamed),
        (offset_of!(G, zero_pages), geo.zero),
        (offset_of!(G, meta_pages), geo.meta),
        (offset_of!(G, image_bytes), image_bytes),
        (offset_of!(G, cow_pages), geo.cow),
        (offset_of!(G, denied_pages), geo.denied),
        (offset_of!(G, pinned_pages), geo.pinned),
        (offset_of!(G, swapcache_pages), geo.swapcache),
        (offset_of!(G, exclusive_pages), geo.exclusive),
        (offset_of!(G, shared_pages), geo.shared),
        (offset_of!(G, written_pages), geo.written),
        (offset_of!(G, cbw_pages), geo.cbw),
    ];
    for (offset, value) in pages {
        put(offset, &(value as u64).to_ne_bytes());
    }
    put(offset_of!(G, page_size), &(PAGE_SIZE as u32).to_ne_bytes());
    put(offset_of!(G, flags), &flags.to_ne_bytes());
    put(offset_of!(G, atomic_ns), &geo.atomic_ns.to_ne_bytes());
    out
}

impl Stream {
    /// Copies as much of the stream into `dest` as fits; returns the number of bytes copied.
    fn read(&mut self, dest: &mut IovIterDest<'_>) -> Result<usize> {
        // Not even the rest of a page already begun, once the image is dropped.
        if self.image.is_dropped() {
            return Err(ENOMEM);
        }
        let mut done = 0;
        while !self.ended && !dest.is_empty() {
            let len = self.image.pages().map_or(0, <[u8]>::len);
            if self.offset >= len {
                if done > 0 && current!().signal_pending() {
                    break;
                }
                if !self.image.advance(MAX_RUN)? {
                    self.ended = true;
                    break;
                }
                self.offset = 0;
            }
            let Some(pages) = self.image.pages() else {
                break;
            };
            let n = dest.copy_to_iter(&pages[self.offset..]);
            if n == 0 {
                return if done > 0 { Ok(done) } else { Err(EFAULT) };
            }
            self.offset += n;
            done += n;
        }
        Ok(done)
    }
}

#[vtable]
impl AnonInodeFile for Image {
    const NAME: &'static CStr = c"[hibsnap-image]";

    fn read(&self, dest: &mut IovIterDest<'_>) -> Result<usize> {
        let mut stream = self.stream.lock();
        match &mut *stream {
            Some(stream) => stream.read(dest),
            None => Ok(0),
        }
    }

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            IOC_GEOMETRY => {
                let now = self
                    .stream
                    .lock()
                    .as_ref()
                    .map(|stream| stream.image.geometry());
                let bytes = self.geometry_bytes(now);
                UserSlice::new(UserPtr::from_addr(arg), bytes.len())
                    .writer()
                    .write_slice(&bytes)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn poll(&self) -> u32 {
        // The image is all in memory: a read never waits.
        anon_inode::POLL_READABLE
    }
}

#[cfg(CONFIG_HIBSNAP_KUNIT_TEST)]
#[kunit_tests(hibsnap_image)]
mod tests {
    use super::*;

    fn word(bytes: &[u8], offset: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[offset..offset + 8]);
        u64::from_ne_bytes(w)
    }

    #[test]
    fn geometry_is_laid_out_as_the_uapi_header_says() {
        let geo = Geometry {
            copied: 1,
            streamed: 2,
            zero: 3,
            meta: 4,
            cow: 6,
            denied: 7,
            pinned: 8,
            swapcache: 9,
            exclusive: 10,
            shared: 12,
            written: 13,
            cbw: 14,
            atomic_ns: 11,
            dropped: false,
        };
        let bytes = uapi_geometry(&geo, 5, uapi::HIBSNAP_GEOMETRY_DROPPED);
        // The offsets of include/uapi/linux/hibsnap.h, as userspace compiles them.
        assert_eq!(bytes.len(), 120);
        for (offset, value) in [
            (0, 1),
            (8, 2),
            (16, 3),
            (24, 4),
            (32, 5),
            (48, 11),
            (56, 6),
            (64, 7),
            (72, 8),
            (80, 9),
            (88, 10),
            (96, 12),
            (104, 13),
            (112, 14),
        ] {
            assert_eq!(word(&bytes, offset), value);
        }
        let half = |offset: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[offset..offset + 4]);
            u32::from_ne_bytes(w)
        };
        assert_eq!(half(40), PAGE_SIZE as u32);
        assert_eq!(half(44), uapi::HIBSNAP_GEOMETRY_DROPPED);
    }
}
