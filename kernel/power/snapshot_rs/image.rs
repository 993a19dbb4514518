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
    snapshot::Kept,
    uapi::UapiGeometry, //
};
use core::mem::size_of;
use kernel::{
    anon_inode::{
        self,
        AnonInodeFile, //
    },
    ioctl::_IOR,
    iov::IovIterDest,
    new_mutex,
    power::{
        Geometry,
        TakenImage, //
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
    image: TakenImage,
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
    Taken(TakenImage, Kept),
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
    fn uapi_geometry(&self, now: Option<Geometry>) -> UapiGeometry {
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
        UapiGeometry::new(&geometry, image_bytes, flags)
    }
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
            if self.offset >= self.image.pages_len() {
                if done > 0 && current!().signal_pending() {
                    break;
                }
                if !self.image.advance(MAX_RUN)? {
                    self.ended = true;
                    break;
                }
                self.offset = 0;
            }
            let n = self.image.copy_pages(self.offset, dest);
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
                let geometry = self.uapi_geometry(now);
                UserSlice::new(UserPtr::from_addr(arg), size_of::<UapiGeometry>())
                    .writer()
                    .write(&geometry)?;
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
