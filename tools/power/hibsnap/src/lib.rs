// SPDX-License-Identifier: GPL-2.0
//! The hibsnap tool's library: the kernel interface, and the image container.

pub mod container;
pub mod remote;
pub mod stream;
pub mod sys;
pub mod uapi;
