// SPDX-License-Identifier: GPL-2.0

//! dm-hibsnap: the device-mapper target that keeps block devices consistent with a hibsnap image.
//!
//! Table: `<start> <len> hibsnap <origin_dev> [<store_limit_mib>]`.
//!
//! In the passthrough state every bio is remapped to the origin. After the `snapshot` message,
//! the origin receives no write: writes go to a volatile store in RAM, in 4 KiB chunks, and reads
//! of chunks the store holds are served from it. `merge` writes the store back to the origin and
//! returns to passthrough (the path of an aborted hibernation: no write is lost); `drop` discards
//! the store and returns to passthrough (the path of a resumed system, whose disk must be the
//! disk at the atomic point). See `Documentation/power/hibsnap.rst`.
//!
//! The device has 4 KiB logical blocks, and during a snapshot the target accepts one chunk of a bio
//! at a time (device-mapper sends the rest in a next bio), so that every write it handles covers
//! exactly one chunk and needs no data of the origin around it. In passthrough, bios are remapped
//! whole.
//!
//! Every target is also in a registry, through which `snapshot_kernel(2)` snapshots all of them at
//! once at the atomic point (`dm_hibsnap_snapshot_all()`, a lock-free mode switch that is safe
//! with interrupts off) and ends them afterwards (`dm_hibsnap_end_all()`).
//!
//! One file per concept: [`store`] (a target's mode and store), [`target`] (the `hibsnap` target
//! type), [`registry`] (every target, switched together) and [`exports`] (its C entry points).

pub mod exports;
mod registry;
mod store;
mod target;

use kernel::{
    device_mapper,
    prelude::*, //
};
use target::Hibsnap;

module! {
    type: DmHibsnap,
    name: "dm_hibsnap",
    authors: ["The hibsnap developers"],
    description: "device-mapper target for hibsnap",
    license: "GPL",
}

#[pin_data]
struct DmHibsnap {
    #[pin]
    registration: device_mapper::Registration<Hibsnap>,
}

impl kernel::InPlaceModule for DmHibsnap {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            registration <- {
                // The registry exists before the target type does: no target can miss it.
                registry::init()?;
                device_mapper::Registration::new(module)
            },
        })
    }
}
