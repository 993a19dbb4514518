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

use crate::snapshot::Kept;
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

/// Where a reader is in the stream.
struct Stream {
    image: LiveImage,
    /// Bytes of the current page already read; `PAGE_SIZE` when the next read must move on.
    offset: usize,
    /// The stream has ended: later reads return 0.
    ended: bool,
}

/// The object behind an image file descriptor.
#[pin_data]
pub(crate) struct Image {
    /// Dropped first: the block devices are merged back and swap written again before the pins
    /// go.
    kept: Option<Kept>,
    /// The image, `None` in a restored system (where it has already been released).
    #[pin]
    stream: Mutex<Option<Stream>>,
    geometry: Geometry,
    resumed: bool,
}

impl Image {
    /// The object for an image just taken (`image`, and what stays frozen while it is open), or,
    /// without `image`, for a system just restored from it.
    pub(crate) fn new(
        image: Option<LiveImage>,
        kept: Option<Kept>,
        geometry: Geometry,
    ) -> impl PinInit<Self, Error> {
        let resumed = image.is_none();
        let stream = image.map(|image| Stream {
            image,
            offset: PAGE_SIZE,
            ended: false,
        });
        try_pin_init!(Image {
            kept,
            stream <- new_mutex!(stream),
            geometry,
            resumed,
        }? Error)
    }

    /// The geometry in its UAPI layout, native-endian; `dropped` says whether the image has been
    /// dropped since it was taken.
    fn geometry_bytes(
        &self,
        dropped: bool,
    ) -> [u8; core::mem::size_of::<uapi::hibsnap_geometry>()] {
        let geo = &self.geometry;
        let mut out = [0u8; core::mem::size_of::<uapi::hibsnap_geometry>()];
        let head = [
            geo.copied as u64,
            geo.streamed as u64,
            geo.zero as u64,
            geo.meta as u64,
            if self.resumed {
                0
            } else {
                geo.image_bytes() as u64
            },
        ];
        let tail = [
            geo.atomic_ns,
            geo.cow as u64,
            geo.denied as u64,
            geo.pinned as u64,
            geo.swapcache as u64,
            geo.exclusive as u64,
        ];
        for (chunk, word) in out[..40].chunks_exact_mut(8).zip(head) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        for (chunk, word) in out[48..].chunks_exact_mut(8).zip(tail) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let mut flags = 0;
        if self.resumed {
            flags |= uapi::HIBSNAP_GEOMETRY_RESUMED;
        }
        if dropped {
            flags |= uapi::HIBSNAP_GEOMETRY_DROPPED;
        }
        out[40..44].copy_from_slice(&(PAGE_SIZE as u32).to_ne_bytes());
        out[44..48].copy_from_slice(&flags.to_ne_bytes());
        out
    }
}

impl Stream {
    /// Copies as much of the stream into `dest` as fits; returns the number of bytes copied.
    fn read(&mut self, dest: &mut IovIterDest<'_>) -> Result<usize> {
        // Not even the rest of a page already begun, once the image is dropped.
        if self.image.geometry().dropped {
            return Err(ENOMEM);
        }
        let mut done = 0;
        while !self.ended && !dest.is_empty() {
            if self.offset == PAGE_SIZE {
                if done > 0 && current!().signal_pending() {
                    break;
                }
                if !self.image.advance()? {
                    self.ended = true;
                    break;
                }
                self.offset = 0;
            }
            let Some(page) = self.image.page() else {
                break;
            };
            let n = dest.copy_to_iter(&page[self.offset..]);
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
                let dropped = match &*self.stream.lock() {
                    Some(stream) => stream.image.geometry().dropped,
                    None => false,
                };
                let bytes = self.geometry_bytes(dropped);
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
