// SPDX-License-Identifier: GPL-2.0

//! The structs of `include/uapi/linux/hibsnap.h` that the ioctls return, as bindgen makes them.
//!
//! Each is a transparent wrapper around the bindgen type, so that it can be written to userspace
//! with [`UserSliceWriter::write`](kernel::uaccess::UserSliceWriter::write): its layout is the
//! header's, as userspace compiles it, by construction.

use kernel::{
    page::PAGE_SIZE,
    power::Geometry,
    transmute::AsBytes,
    uapi, //
};

/// `struct hibsnap_geometry`: what `HIBSNAP_IOC_GEOMETRY` returns.
///
/// # Invariants
///
/// The same type as the C header's, as bindgen made it.
#[repr(transparent)]
pub(crate) struct UapiGeometry(pub(crate) uapi::hibsnap_geometry);

// SAFETY: By the type invariants, this is `struct hibsnap_geometry`, which userspace reads as
// bytes: fourteen `__u64` and two `__u32` in an order that leaves no padding (its size, 120, is
// checked by the KUnit test below), no pointer, no interior mutability.
unsafe impl AsBytes for UapiGeometry {}

impl UapiGeometry {
    /// The geometry `geo` of an image whose stream is `image_bytes` long, with `flags`
    /// (`HIBSNAP_GEOMETRY_*`).
    pub(crate) fn new(geo: &Geometry, image_bytes: usize, flags: u32) -> Self {
        let pages = |n: usize| n as u64;
        UapiGeometry(uapi::hibsnap_geometry {
            copied_pages: pages(geo.copied),
            streamed_pages: pages(geo.streamed),
            zero_pages: pages(geo.zero),
            meta_pages: pages(geo.meta),
            image_bytes: image_bytes as u64,
            page_size: PAGE_SIZE as u32,
            flags,
            atomic_ns: geo.atomic_ns,
            cow_pages: pages(geo.cow),
            denied_pages: pages(geo.denied),
            pinned_pages: pages(geo.pinned),
            swapcache_pages: pages(geo.swapcache),
            exclusive_pages: pages(geo.exclusive),
            shared_pages: pages(geo.shared),
            written_pages: pages(geo.written),
            cbw_pages: pages(geo.cbw),
        })
    }
}

/// `struct hibsnap_freeze_status`: what `HIBSNAP_IOC_FREEZE_STATUS` returns.
///
/// # Invariants
///
/// The same type as the C header's, as bindgen made it.
#[repr(transparent)]
pub(crate) struct UapiFreezeStatus(pub(crate) uapi::hibsnap_freeze_status);

// SAFETY: By the type invariants, this is `struct hibsnap_freeze_status`, which userspace reads as
// bytes: four `__u32`, no padding, no pointer, no interior mutability.
unsafe impl AsBytes for UapiFreezeStatus {}

#[cfg(CONFIG_HIBSNAP_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(hibsnap_uapi)]
mod tests {
    use super::*;
    use core::mem::{
        offset_of,
        size_of, //
    };

    #[test]
    fn structs_are_laid_out_as_userspace_compiles_them() {
        type G = uapi::hibsnap_geometry;
        assert_eq!(size_of::<UapiGeometry>(), 120);
        for (offset, want) in [
            (offset_of!(G, copied_pages), 0),
            (offset_of!(G, streamed_pages), 8),
            (offset_of!(G, zero_pages), 16),
            (offset_of!(G, meta_pages), 24),
            (offset_of!(G, image_bytes), 32),
            (offset_of!(G, page_size), 40),
            (offset_of!(G, flags), 44),
            (offset_of!(G, atomic_ns), 48),
            (offset_of!(G, cow_pages), 56),
            (offset_of!(G, denied_pages), 64),
            (offset_of!(G, pinned_pages), 72),
            (offset_of!(G, swapcache_pages), 80),
            (offset_of!(G, exclusive_pages), 88),
            (offset_of!(G, shared_pages), 96),
            (offset_of!(G, written_pages), 104),
            (offset_of!(G, cbw_pages), 112),
        ] {
            assert_eq!(offset, want);
        }
        assert_eq!(size_of::<UapiFreezeStatus>(), 16);
    }

    #[test]
    fn geometry_fields_are_where_they_belong() {
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
        let g = UapiGeometry::new(&geo, 5, uapi::HIBSNAP_GEOMETRY_DROPPED).0;
        assert_eq!(
            [
                g.copied_pages,
                g.streamed_pages,
                g.zero_pages,
                g.meta_pages,
                g.image_bytes,
                g.atomic_ns,
                g.cow_pages,
                g.denied_pages,
                g.pinned_pages,
                g.swapcache_pages,
                g.exclusive_pages,
                g.shared_pages,
                g.written_pages,
                g.cbw_pages
            ],
            [1, 2, 3, 4, 5, 11, 6, 7, 8, 9, 10, 12, 13, 14]
        );
        assert_eq!(g.page_size, PAGE_SIZE as u32);
        assert_eq!(g.flags, uapi::HIBSNAP_GEOMETRY_DROPPED);
    }
}
