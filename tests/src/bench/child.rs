//! Running a process and measuring it: wall time, user and system CPU, peak
//! RSS. The bench re-executes itself as `bench measure <out> -- <cmd>`: that
//! wrapper has exactly one child, so `getrusage(RUSAGE_CHILDREN)` after the
//! wait is exactly that child's (the bench process itself has many children
//! and `ru_maxrss` of RUSAGE_CHILDREN is a maximum over all of them).

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What one child cost.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Measured {
    pub exit_code: i32,
    /// Spawn to exit.
    pub wall_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub max_rss_kb: u64,
}

impl Measured {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// The `measure` subcommand: runs `argv`, waits, writes [`Measured`] as
/// JSON to `out`. The child inherits this process's stdio.
pub fn measure_main(out: &Path, argv: &[String]) -> anyhow::Result<i32> {
    let (program, args) = argv.split_first().context("measure: no command given")?;
    let started = Instant::now();
    let status = Command::new(program).args(args).status().with_context(|| format!("run {program}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .context("getrusage(RUSAGE_CHILDREN)")?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let measured = Measured {
        exit_code: status.code().unwrap_or(-1),
        wall_s,
        user_s: seconds(usage.user_time()),
        system_s: seconds(usage.system_time()),
        // Linux reports kilobytes.
        max_rss_kb: usage.max_rss() as u64,
    };
    std::fs::write(out, serde_json::to_vec(&measured)?).with_context(|| format!("write {}", out.display()))?;
    Ok(0)
}

/// A finished measured run: its numbers and its output.
#[derive(Debug)]
pub struct Finished {
    pub measured: Measured,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!("stdout is not JSON: {}\nstderr: {}", excerpt(&self.stdout), excerpt(&self.stderr))
        })
    }
}

fn excerpt(text: &str) -> String {
    let tail: String = text.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    tail
}

/// Runs `command` under the `measure` wrapper (`bench_exe`), in a blocking
/// thread. Fails when the command exits non-zero unless `allow_failure`.
pub async fn run_measured(
    bench_exe: &Path,
    command: Command,
    scratch: &Path,
    allow_failure: bool,
) -> anyhow::Result<Finished> {
    let bench_exe = bench_exe.to_path_buf();
    let scratch = scratch.to_path_buf();
    tokio::task::spawn_blocking(move || run_measured_blocking(&bench_exe, &command, &scratch, allow_failure))
        .await
        .context("measured run panicked")?
}

fn run_measured_blocking(
    bench_exe: &Path,
    command: &Command,
    scratch: &Path,
    allow_failure: bool,
) -> anyhow::Result<Finished> {
    let id = fastrand::u64(..);
    let out = scratch.join(format!("measured-{id:016x}.json"));
    let stdout_path = scratch.join(format!("stdout-{id:016x}.txt"));
    let stderr_path = scratch.join(format!("stderr-{id:016x}.txt"));
    let mut wrapper = Command::new(bench_exe);
    wrapper.arg("measure").arg(&out).arg("--").arg(command.get_program()).args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        wrapper.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }
    wrapper
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?);
    let status = wrapper.status().context("run the measure wrapper")?;
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stdout_path);
    let _ = std::fs::remove_file(&stderr_path);
    if !status.success() {
        bail!("measure wrapper failed ({status}): {}", excerpt(&stderr));
    }
    let measured: Measured =
        serde_json::from_slice(&std::fs::read(&out).with_context(|| format!("read {}", out.display()))?)?;
    let _ = std::fs::remove_file(&out);
    if measured.exit_code != 0 && !allow_failure {
        bail!(
            "{} exited with {}\nstdout: {}\nstderr: {}",
            command.get_program().to_string_lossy(),
            measured.exit_code,
            excerpt(&stdout),
            excerpt(&stderr)
        );
    }
    Ok(Finished { measured, stdout, stderr })
}

/// Size of a file in bytes (0 when missing).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The bench's own executable (for the `measure` and `replay` wrappers).
pub fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("the bench's own path")
}
