//! Peak memory (resident set) of `nnc train --steps 200 -q` on Fashion-MNIST: the
//! built `nnc` binary runs as a child process and its peak RSS is read from the
//! kernel's accounting (`wait4`'s `ru_maxrss`). Not timed by criterion.
//!
//! `cargo bench -j2 --bench peak_memory`
//!
//! The data comes from `$NNC_DATA`, else `/usr/share/datasets/fashion-mnist` (as for
//! `nnc train`); without it the bench prints why and does nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

const NNC: &str = env!("CARGO_BIN_EXE_nnc");

/// A finished child: its peak RSS in bytes, wall time, exit code and stderr.
struct Run {
    rss: u64,
    seconds: f64,
    code: i32,
    stderr: String,
}

#[cfg(target_os = "linux")]
fn run(args: &[&str]) -> std::io::Result<Run> {
    use std::io::{Read, Seek};
    // A file, not a pipe: a pipe nobody reads could fill up and block the child.
    let mut stderr = tempfile::tempfile()?;
    let start = Instant::now();
    let child = Command::new(NNC).args(args).stdout(Stdio::null()).stderr(stderr.try_clone()?).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: `pid` is our child, not yet reaped (`child` is never waited on; it is
        // dropped below without reaping), and both out-pointers are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    drop(child);
    if r != pid {
        return Err(std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let mut text = String::new();
    stderr.rewind()?;
    stderr.read_to_string(&mut text)?;
    // Linux reports ru_maxrss in KiB.
    Ok(Run { rss: usage.ru_maxrss as u64 * 1024, seconds, code, stderr: text })
}

#[cfg(not(target_os = "linux"))]
fn run(_: &[&str]) -> std::io::Result<Run> {
    Err(std::io::Error::other("peak RSS is read with Linux's wait4 accounting"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: building is the test.
        println!("peak_memory: runs under `cargo bench` only");
        return;
    }
    let data = std::env::var_os("NNC_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    if !data.join("train-images-idx3-ubyte.gz").exists() && !data.join("train-images-idx3-ubyte").exists() {
        println!("peak_memory: skipped, no Fashion-MNIST in {} (set NNC_DATA)", data.display());
        return;
    }
    let data = data.to_string_lossy().to_string();
    let runs: [(&str, Vec<&str>); 4] = [
        ("`nnc --version` (the process alone)", vec!["--version"]),
        ("`nnc bench --steps 200` (the same step on random data, no data set)", vec!["bench", "--steps", "200"]),
        ("`nnc train --steps 200 -q`", vec!["train", "--data", &data, "--steps", "200", "-q"]),
        (
            "`nnc train --steps 200 -q --batch 1024`",
            vec!["train", "--data", &data, "--steps", "200", "-q", "--batch", "1024"],
        ),
    ];
    println!("\nPeak memory of {NNC} (Fashion-MNIST in {data})\n");
    println!("| command | peak RSS (MiB) | wall time (s) |");
    println!("|---|---:|---:|");
    for (name, args) in runs {
        match run(&args) {
            Ok(r) if r.code == 0 => println!("| {name} | {:.1} | {:.2} |", r.rss as f64 / (1 << 20) as f64, r.seconds),
            Ok(r) => {
                eprintln!("peak_memory: `nnc {}` failed with exit code {}:\n{}", args.join(" "), r.code, r.stderr);
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("peak_memory: cannot run {NNC}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!();
}
