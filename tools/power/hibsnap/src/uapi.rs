// SPDX-License-Identifier: GPL-2.0
//! The kernel's interface for hibsnap: a checked copy of `include/uapi/linux/hibsnap.h` and of
//! the syscall numbers. The tests compare every constant and every struct layout with the
//! header and the syscall table of the patch series, so the copy cannot drift.

use core::mem::size_of;

/// `freeze_processes(2)` on x86_64.
pub const NR_FREEZE_PROCESSES: libc::c_long = 473;
/// `snapshot_kernel(2)` on x86_64.
pub const NR_SNAPSHOT_KERNEL: libc::c_long = 474;

/// `HIBSNAP_FREEZE_FLAGS_ALL`.
pub const FREEZE_FLAGS_ALL: u32 = 0;
/// `HIBSNAP_SNAPSHOT_FREEZE_OTHERS`.
pub const SNAPSHOT_FREEZE_OTHERS: u32 = 1 << 0;
/// `HIBSNAP_SNAPSHOT_FLAGS_ALL`.
pub const SNAPSHOT_FLAGS_ALL: u32 = SNAPSHOT_FREEZE_OTHERS;
/// `HIBSNAP_GEOMETRY_RESUMED`.
pub const GEOMETRY_RESUMED: u32 = 1 << 0;
/// `HIBSNAP_GEOMETRY_DROPPED`.
pub const GEOMETRY_DROPPED: u32 = 1 << 1;
/// `HIBSNAP_IOC_MAGIC`.
pub const IOC_MAGIC: u32 = 0xB9;

/// `struct hibsnap_geometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    pub copied_pages: u64,
    pub streamed_pages: u64,
    pub zero_pages: u64,
    pub meta_pages: u64,
    pub image_bytes: u64,
    pub page_size: u32,
    pub flags: u32,
    pub atomic_ns: u64,
    pub cow_pages: u64,
    pub denied_pages: u64,
    pub pinned_pages: u64,
    pub swapcache_pages: u64,
    pub exclusive_pages: u64,
    pub shared_pages: u64,
    pub written_pages: u64,
    pub cbw_pages: u64,
}

/// `struct hibsnap_freeze_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreezeStatus {
    pub groups: u32,
    pub stopped: u32,
    pub asleep: u32,
    pub running: u32,
}

/// `_IOR(HIBSNAP_IOC_MAGIC, nr, T)` with `T` of `size` bytes (asm-generic ioctl encoding).
const fn ior(nr: u32, size: usize) -> u32 {
    const IOC_READ: u32 = 2;
    (IOC_READ << 30) | ((size as u32) << 16) | (IOC_MAGIC << 8) | nr
}

/// `HIBSNAP_IOC_GEOMETRY`.
pub const IOC_GEOMETRY: u32 = ior(0x01, size_of::<Geometry>());
/// `HIBSNAP_IOC_FREEZE_STATUS`.
pub const IOC_FREEZE_STATUS: u32 = ior(0x02, size_of::<FreezeStatus>());

/// An integer field of a uapi struct, as its little-endian (x86_64) bytes.
trait LeField: Sized {
    fn put(self, out: &mut [u8]);
    fn get(b: &[u8]) -> Self;
}

macro_rules! le_field {
    ($($t:ty),*) => {$(
        impl LeField for $t {
            fn put(self, out: &mut [u8]) {
                out[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }

            fn get(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b[..size_of::<$t>()].try_into().unwrap())
            }
        }
    )*};
}

le_field!(u32, u64);

/// `to_bytes()` and `from_bytes()` for a uapi struct: each field at its `offset_of!`.
macro_rules! uapi_bytes {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl $t {
            /// The struct as the bytes of the C struct, little-endian (x86_64).
            pub fn to_bytes(&self) -> [u8; size_of::<$t>()] {
                let mut out = [0u8; size_of::<$t>()];
                $(self.$f.put(&mut out[core::mem::offset_of!($t, $f)..]);)*
                out
            }

            /// The struct from the bytes of the C struct, as `to_bytes()` writes them.
            pub fn from_bytes(b: &[u8; size_of::<$t>()]) -> $t {
                $t {
                    $($f: LeField::get(&b[core::mem::offset_of!($t, $f)..]),)*
                }
            }
        }
    };
}

uapi_bytes!(Geometry {
    copied_pages,
    streamed_pages,
    zero_pages,
    meta_pages,
    image_bytes,
    page_size,
    flags,
    atomic_ns,
    cow_pages,
    denied_pages,
    pinned_pages,
    swapcache_pages,
    exclusive_pages,
    shared_pages,
    written_pages,
    cbw_pages,
});

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// The repository root: tools/power/hibsnap is three levels down.
    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
    }

    fn header() -> String {
        std::fs::read_to_string(repo().join("include/uapi/linux/hibsnap.h"))
            .expect("include/uapi/linux/hibsnap.h")
    }

    /// `#define NAME VALUE` lines whose value is a number or `(1U << n)`.
    fn defines(text: &str) -> HashMap<String, u32> {
        let mut out = HashMap::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let Some(name) = words.next().and_then(|n| n.strip_prefix("HIBSNAP_")) else {
                continue;
            };
            let value = words.collect::<Vec<_>>().join(" ");
            let value = value.trim_end_matches('U');
            let parsed = if let Some(hex) = value.strip_prefix("0x") {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(shift) = value
                .strip_prefix("(1U << ")
                .and_then(|s| s.strip_suffix(')'))
            {
                shift.parse::<u32>().ok().map(|s| 1 << s)
            } else {
                value.parse().ok()
            };
            if let Some(v) = parsed {
                out.insert(name.to_string(), v);
            }
        }
        out
    }

    /// The fields of `struct NAME { ... };`: (type, name), in order.
    fn fields(text: &str, name: &str) -> Vec<(String, String)> {
        let start = text.find(&format!("struct {name} {{")).expect(name);
        let body = &text[start..text[start..].find("};").unwrap() + start];
        let mut out = Vec::new();
        let mut comment = false;
        for line in body.lines().skip(1) {
            let line = line.trim();
            if comment {
                comment = !line.contains("*/");
                continue;
            }
            if line.starts_with("/*") {
                comment = !line.contains("*/");
                continue;
            }
            let decl = line.split(';').next().unwrap_or("");
            let mut words = decl.split_whitespace();
            if let (Some(ty), Some(field)) = (words.next(), words.next()) {
                out.push((ty.to_string(), field.to_string()));
            }
        }
        out
    }

    #[test]
    fn constants_match_the_header() {
        let d = defines(&header());
        assert_eq!(d["FREEZE_FLAGS_ALL"], FREEZE_FLAGS_ALL);
        assert_eq!(d["SNAPSHOT_FREEZE_OTHERS"], SNAPSHOT_FREEZE_OTHERS);
        assert_eq!(d["GEOMETRY_RESUMED"], GEOMETRY_RESUMED);
        assert_eq!(d["GEOMETRY_DROPPED"], GEOMETRY_DROPPED);
        assert_eq!(d["IOC_MAGIC"], IOC_MAGIC);
        assert!(
            header().contains("#define HIBSNAP_SNAPSHOT_FLAGS_ALL\tHIBSNAP_SNAPSHOT_FREEZE_OTHERS")
        );
        assert!(header().contains("_IOR(HIBSNAP_IOC_MAGIC, 0x01, \\"));
        assert!(header().contains("_IOR(HIBSNAP_IOC_MAGIC, 0x02, \\"));
    }

    #[test]
    fn structs_match_the_header() {
        let text = header();
        let check = |c: Vec<(String, String)>, rust: &[(&str, usize, usize)], size: usize| {
            assert_eq!(c.len(), rust.len(), "{c:?}");
            let mut at: usize = 0;
            for ((ty, name), (rname, off, len)) in c.iter().zip(rust) {
                assert_eq!(name, rname);
                let want = if ty == "__u64" { 8 } else { 4 };
                assert_eq!(*len, want, "{name}: {ty}");
                at = at.div_ceil(want) * want;
                assert_eq!(*off, at, "{name}");
                at += want;
            }
            assert_eq!(size, at);
        };
        macro_rules! f {
            ($t:ty, $($f:ident),*) => {
                &[$((stringify!($f), offset_of!($t, $f), {
                    let v = <$t>::default();
                    core::mem::size_of_val(&v.$f)
                })),*]
            };
        }
        check(
            fields(&text, "hibsnap_geometry"),
            f!(
                Geometry,
                copied_pages,
                streamed_pages,
                zero_pages,
                meta_pages,
                image_bytes,
                page_size,
                flags,
                atomic_ns,
                cow_pages,
                denied_pages,
                pinned_pages,
                swapcache_pages,
                exclusive_pages,
                shared_pages,
                written_pages,
                cbw_pages
            ),
            size_of::<Geometry>(),
        );
        check(
            fields(&text, "hibsnap_freeze_status"),
            f!(FreezeStatus, groups, stopped, asleep, running),
            size_of::<FreezeStatus>(),
        );
    }

    #[test]
    fn syscall_numbers_match_the_table() {
        // x86-64's table: the others (alpha's numbers differ) are wired too.
        const TABLE: &str = "arch/x86/entry/syscalls/syscall_64.tbl";
        let mut found = HashMap::new();
        for entry in std::fs::read_dir(repo().join("patches")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            let mut in_table = false;
            for line in text.lines() {
                if line.starts_with("diff --git ") {
                    in_table = line.ends_with(&format!(" b/{TABLE}"));
                    continue;
                }
                let w: Vec<_> = line.trim_start_matches('+').split_whitespace().collect();
                if in_table && line.starts_with('+') && w.len() >= 3 && w[1] == "common" {
                    if let Ok(nr) = w[0].parse::<libc::c_long>() {
                        found.insert(w[2].to_string(), nr);
                    }
                }
            }
        }
        assert_eq!(found.get("freeze_processes"), Some(&NR_FREEZE_PROCESSES));
        assert_eq!(found.get("snapshot_kernel"), Some(&NR_SNAPSHOT_KERNEL));
    }

    #[test]
    fn geometry_bytes_round_trip() {
        let g = Geometry {
            copied_pages: 1,
            streamed_pages: 2,
            zero_pages: 3,
            meta_pages: 4,
            image_bytes: 5,
            page_size: 4096,
            flags: GEOMETRY_RESUMED,
            atomic_ns: 6,
            cow_pages: 7,
            denied_pages: 8,
            pinned_pages: 9,
            swapcache_pages: 10,
            exclusive_pages: 11,
            shared_pages: 12,
            written_pages: 13,
            cbw_pages: 14,
        };
        assert_eq!(Geometry::from_bytes(&g.to_bytes()), g);
        assert_eq!(g.to_bytes()[40..44], 4096u32.to_le_bytes());
    }
}
