// SPDX-License-Identifier: GPL-2.0
//! `hibsnap freeze`: stop every other userspace process with `freeze_processes(2)`, hold the
//! freeze for a while, and release it; for trying the freeze on a live system.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use hibsnap::sys;

/// A userspace process, as `/proc` shows it.
struct Process {
    pid: u32,
    state: char,
    comm: String,
}

/// Every userspace process (kernel threads, which have no command line, left out).
fn processes() -> Result<Vec<Process>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        let state = stat[close + 1..].trim_start().chars().next().unwrap_or('?');
        out.push(Process {
            pid,
            state,
            comm: stat[open + 1..close].to_string(),
        });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// The first line of `path`, or "" if it cannot be read.
fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Runs `hibsnap freeze`.
pub fn run(hold: f64, show: bool, watch: &[String]) -> Result<()> {
    if !(0.0..=3600.0).contains(&hold) {
        bail!("--hold {hold}: from 0 to 3600 seconds");
    }
    let start = Instant::now();
    let freeze = sys::freeze_processes(0).context("freeze_processes")?;
    println!(
        "froze userspace in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let before: Vec<_> = watch.iter().map(|w| first_line(w)).collect();
    let me = std::process::id();
    let mut unstopped = Vec::new();
    if show {
        let all = processes()?;
        println!("{:>7} {:>5}  COMMAND", "PID", "STATE");
        for p in &all {
            let note = if p.pid == me {
                "   (the caller: runs on)"
            } else {
                ""
            };
            println!("{:>7} {:>5}  {}{}", p.pid, p.state, p.comm, note);
            if p.pid != me && p.state != 'T' && p.state != 't' {
                unstopped.push(p.pid);
            }
        }
        let status = sys::freeze_status(&freeze).context("HIBSNAP_IOC_FREEZE_STATUS")?;
        println!(
            "{} of {} userspace processes stopped (all but this one, init included); \
             threads: {} stopped, {} asleep with the stop pending, {} running",
            all.len() - 1 - unstopped.len(),
            all.len(),
            status.stopped,
            status.asleep,
            status.running
        );
    }
    std::thread::sleep(Duration::from_secs_f64(hold));
    let mut changed = false;
    for (w, before) in watch.iter().zip(&before) {
        let after = first_line(w);
        let mark = if after != *before { "  CHANGED" } else { "" };
        println!("{w}: {before} at the start of the hold, {after} at its end{mark}");
        changed |= after != *before;
    }
    drop(freeze);
    println!("released: every process the freeze stopped runs again");
    if !unstopped.is_empty() {
        println!("DEMO: FAIL processes not stopped: {unstopped:?}");
        bail!("{} processes were not stopped", unstopped.len());
    }
    if changed {
        println!("DEMO: FAIL a watched file changed while frozen");
        bail!("a watched file changed while frozen");
    }
    println!("DEMO: PASS every other process was stopped, the caller ran on");
    Ok(())
}
