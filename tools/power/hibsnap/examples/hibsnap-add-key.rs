// SPDX-License-Identifier: GPL-2.0
//! A test helper, not installed: adds a key file's contents to the kernel keyring as a `user`
//! key, as `keyctl padd user DESCRIPTION @u <FILE` would where there is no keyctl(1), so that
//! the tests can read an image with `--keyring DESCRIPTION`.
//!
//! Usage: hibsnap-add-key DESCRIPTION FILE

use anyhow::{ensure, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    ensure!(args.len() == 3, "usage: hibsnap-add-key DESCRIPTION FILE");
    let payload = std::fs::read(&args[2]).with_context(|| format!("key file {}", args[2]))?;
    hibsnap::sys::add_user_key(&args[1], &payload).context("add_key")?;
    Ok(())
}
