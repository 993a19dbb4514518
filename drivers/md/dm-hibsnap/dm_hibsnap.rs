// SPDX-License-Identifier: GPL-2.0

//! dm-hibsnap: the device-mapper target that keeps block devices consistent with a hibsnap image.
//!
//! Table: `<start> <len> hibsnap <origin_dev>`.
//!
//! This first version is the passthrough state: every bio is remapped to the origin, at the cost
//! of a remap, and counted. The snapshot state (writes diverted to a volatile store, reads served
//! from it where it holds newer data), `merge` and `drop` come next; see
//! `Documentation/power/hibsnap.rst`.

use kernel::{
    block::bio::{
        Bio,
        Op, //
    },
    device_mapper::{
        self,
        Args,
        CtrError,
        DeviceVisitor,
        MapResult,
        StatusType,
        StatusWriter,
        Target,
        TargetDevice,
        TargetSetup, //
    },
    ffi::c_int,
    fmt::{
        self,
        Write, //
    },
    prelude::*,
    sync::atomic::{
        ordering,
        Atomic, //
    },
};

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
            registration <- device_mapper::Registration::new(module),
        })
    }
}

/// Bio counters, for `dmsetup status`.
struct Counters {
    reads: Atomic<u64>,
    writes: Atomic<u64>,
    flushes: Atomic<u64>,
    other: Atomic<u64>,
}

impl Counters {
    fn count(&self, op: Op) {
        let counter = match op {
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Flush => &self.flushes,
            Op::Discard | Op::WriteZeroes | Op::Other => &self.other,
        };
        counter.add(1, ordering::Relaxed);
    }
}

/// One `hibsnap` target: a window onto its origin device.
struct Hibsnap {
    origin: TargetDevice,
    len: u64,
    counters: Counters,
}

#[vtable]
impl Target for Hibsnap {
    const NAME: &'static CStr = c"hibsnap";
    const VERSION: [u32; 3] = [0, 1, 0];

    fn new(setup: &mut TargetSetup<'_>, args: Args<'_>) -> Result<KBox<Self>, CtrError> {
        if args.len() != 1 {
            return Err(CtrError::new(
                EINVAL,
                c"Invalid argument count: <origin_dev>",
            ));
        }
        let path = args
            .get(0)
            .ok_or(CtrError::new(EINVAL, c"Missing origin device"))?;
        let origin = setup
            .get_device(path)
            .map_err(|e| CtrError::new(e, c"Origin device lookup failed"))?;
        setup.set_num_flush_bios(1);
        setup.set_num_discard_bios(1);
        let len = setup.len();
        Ok(KBox::new(
            Hibsnap {
                origin,
                len,
                counters: Counters {
                    reads: Atomic::new(0),
                    writes: Atomic::new(0),
                    flushes: Atomic::new(0),
                    other: Atomic::new(0),
                },
            },
            GFP_KERNEL,
        )?)
    }

    fn map(&self, bio: &mut Bio, offset: u64) -> MapResult {
        self.counters.count(bio.op());
        self.origin.remap(bio, offset);
        MapResult::Remapped
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) -> fmt::Result {
        match kind {
            StatusType::Info => {
                let c = &self.counters;
                out.write_fmt(fmt!(
                    "passthrough reads {} writes {} flushes {} other {}",
                    c.reads.load(ordering::Relaxed),
                    c.writes.load(ordering::Relaxed),
                    c.flushes.load(ordering::Relaxed),
                    c.other.load(ordering::Relaxed)
                ))
            }
            StatusType::Table => out.write_fmt(fmt!("{}", self.origin.name())),
            StatusType::Ima => out.write_fmt(fmt!(
                "target_name=hibsnap,target_version=0.1.0,origin={};",
                self.origin.name()
            )),
        }
    }

    fn message(&self, args: Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        let what = args.get(0).map(CStr::to_bytes).unwrap_or(b"");
        pr_warn!(
            "unknown message '{}'\n",
            core::str::from_utf8(what).unwrap_or("?")
        );
        Err(EINVAL)
    }

    fn iterate_devices(&self, visitor: &mut DeviceVisitor) -> c_int {
        visitor.visit(&self.origin, 0, self.len)
    }
}
