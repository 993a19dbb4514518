// SPDX-License-Identifier: GPL-2.0
//! A test helper, not installed: rewrites the release and build id that an image's header
//! names, and authenticates the header again with the key, so that the tests can check that
//! `hibsnap resume` refuses an image of another kernel build.
//!
//! Usage: hibsnap-reseal IMAGE KEY_FILE RELEASE

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

use hibsnap::container::{reseal_header, Key, HEADER_LEN};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4,
        "usage: hibsnap-reseal IMAGE KEY_FILE RELEASE"
    );
    let key = Key::from_file_contents(&std::fs::read(&args[2]).context("key file")?)?;
    let mut dev = OpenOptions::new().read(true).write(true).open(&args[1])?;
    let mut old = vec![0u8; HEADER_LEN];
    dev.read_exact(&mut old)?;
    let new = reseal_header(&old, &key, |h| {
        h.release = args[3].clone();
        h.build_id = vec![0x5a; 20];
    })?;
    dev.seek(SeekFrom::Start(0))?;
    dev.write_all(&new)?;
    dev.sync_all()?;
    Ok(())
}
