//! The `direct` sink: no LightRAG server to talk to, documents become files.
//!
//! Each document is written to `<working_dir>/inputs/<basename of its
//! file_source>`: the input folder of a co-located LightRAG whose `INPUT_DIR`
//! points there. LightRAG picks up `.txt` files from `INPUT_DIR` when it
//! scans (`POST /documents/scan`, or its start-up scan with
//! `--auto-scan-at-startup`); the file name then becomes the stored
//! `file_path`, so identity works exactly as in `api` mode.
//!
//! Writes are atomic: the text goes to a temporary file in the same folder
//! whose name LightRAG's scanner ignores (`.<basename>.tmp-<random>`: hidden,
//! and no supported extension), is flushed to disk, renamed over the final
//! name, and the folder itself is flushed, so a scan never sees half a
//! document and a crash leaves either the old file or the new one. Temporary
//! files a crash left behind are removed on first use. All file work runs on
//! `spawn_blocking`.

use super::{DocumentSink, InsertOutcome, ReplaceOutcome, SinkError, SinkErrorKind, stored_basename};
use crate::config::LightragDirectConfig;
use crate::transform::Document;
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The marker in the name of a temporary file (after the leading `.`).
const TEMP_MARKER: &str = ".tmp-";

/// A temporary file older than this cannot belong to a write in progress
/// (documents are small; a write takes milliseconds), so it is a crash's
/// leftover. Younger ones are left alone: another sink on the same folder
/// may be writing them right now.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Longest part of a basename kept in a temporary file's name, so the
/// temporary name stays below the common 255-byte file-name limit.
const MAX_TEMP_STEM: usize = 200;

/// Drops documents into a co-located LightRAG's input folder.
#[derive(Debug, Clone)]
pub struct DirectSink {
    inputs: PathBuf,
    /// Whether the folder was created and swept of stale temporary files.
    prepared: Arc<Mutex<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Replace,
}

#[derive(Debug, PartialEq, Eq)]
enum Written {
    New,
    Identical,
}

impl DirectSink {
    /// Does no I/O: the folder is created (and swept) on first use.
    pub fn new(config: &LightragDirectConfig) -> Result<Self, SinkError> {
        if config.working_dir.as_os_str().is_empty() {
            return Err(SinkError::fatal("lightrag.direct.working_dir is empty"));
        }
        Ok(Self { inputs: config.working_dir.join("inputs"), prepared: Arc::new(Mutex::new(false)) })
    }

    /// The folder documents are written to (`<working_dir>/inputs`).
    pub fn inputs_dir(&self) -> &Path {
        &self.inputs
    }

    async fn write(&self, doc: &Document, mode: Mode) -> Result<Written, SinkError> {
        let basename = stored_basename(&doc.file_source).to_owned();
        if basename.is_empty() || basename == "." || basename == ".." || basename.contains('\0') {
            return Err(SinkError::rejected(format!(
                "file_source {:?} has no usable file name for {}",
                doc.file_source,
                self.inputs.display()
            )));
        }
        let (inputs, prepared, text) = (self.inputs.clone(), self.prepared.clone(), doc.text.clone());
        tokio::task::spawn_blocking(move || {
            prepare(&inputs, &prepared)?;
            write_document(&inputs, &basename, text.as_bytes(), mode)
        })
        .await
        .map_err(|e| SinkError::transient(format!("writing into {} was interrupted: {e}", self.inputs.display())))?
    }
}

#[async_trait]
impl DocumentSink for DirectSink {
    async fn insert(&self, doc: &Document) -> Result<InsertOutcome, SinkError> {
        Ok(match self.write(doc, Mode::Insert).await? {
            Written::New => InsertOutcome::Accepted { track_id: None },
            Written::Identical => InsertOutcome::AlreadyStored { status: None },
        })
    }

    async fn replace(&self, doc: &Document) -> Result<ReplaceOutcome, SinkError> {
        self.write(doc, Mode::Replace).await?;
        Ok(ReplaceOutcome::Replaced { track_id: None })
    }

    fn describe(&self) -> String {
        self.inputs.display().to_string()
    }
}

/// Creates the folder and removes stale temporary files, once per sink.
fn prepare(inputs: &Path, prepared: &Mutex<bool>) -> Result<(), SinkError> {
    let mut done = prepared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *done {
        return Ok(());
    }
    let not_a_folder =
        || SinkError::fatal(format!("{} is not a folder; check lightrag.direct.working_dir", inputs.display()));
    fs::create_dir_all(inputs).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => not_a_folder(),
        _ => io_error("creating the folder", inputs, e),
    })?;
    if !inputs.is_dir() {
        return Err(not_a_folder());
    }
    remove_stale_temp_files(inputs);
    *done = true;
    Ok(())
}

fn remove_stale_temp_files(inputs: &Path) {
    let entries = match fs::read_dir(inputs) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(folder = %inputs.display(), error = %e, "cannot list the folder for stale temporary files");
            return;
        }
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) {
            continue;
        }
        let age =
            entry.metadata().and_then(|m| m.modified()).ok().and_then(|modified| now.duration_since(modified).ok());
        if age.is_some_and(|age| age >= STALE_TEMP_AGE) {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed a temporary file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a stale temporary file")
                }
            }
        }
    }
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

fn temp_name(basename: &str) -> String {
    let mut end = basename.len().min(MAX_TEMP_STEM);
    while !basename.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}{TEMP_MARKER}{:016x}", &basename[..end], fastrand::u64(..))
}

fn write_document(inputs: &Path, basename: &str, text: &[u8], mode: Mode) -> Result<Written, SinkError> {
    let target = inputs.join(basename);
    if mode == Mode::Insert {
        match fs::metadata(&target) {
            Ok(meta) if meta.is_file() && meta.len() == text.len() as u64 => {
                let existing = fs::read(&target).map_err(|e| io_error("reading", &target, e))?;
                if existing == text {
                    return Ok(Written::Identical);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("reading", &target, e)),
        }
    }

    let temp = inputs.join(temp_name(basename));
    let written = write_temp(&temp, text).and_then(|()| {
        fs::rename(&temp, &target).map_err(|e| io_error(&format!("renaming {} to", temp.display()), &target, e))
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    // The rename is durable only once the folder's entry is on disk.
    File::open(inputs).and_then(|dir| dir.sync_all()).map_err(|e| io_error("flushing the folder", inputs, e))?;
    Ok(Written::New)
}

fn write_temp(temp: &Path, text: &[u8]) -> Result<(), SinkError> {
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(temp).map_err(|e| io_error("creating", temp, e))?;
    file.write_all(text).map_err(|e| io_error("writing", temp, e))?;
    file.sync_all().map_err(|e| io_error("flushing", temp, e))
}

/// Names the path; decides who is at fault. Only a problem with this
/// document's own name is the memory's (charged an attempt); every other
/// failure is the environment's (a full disk, a quota, a read-only or
/// failing file system, no descriptors left, no permission): it would fail
/// every document alike, so the run stops and no memory is charged.
fn io_error(action: &str, path: &Path, error: io::Error) -> SinkError {
    let kind = match error.kind() {
        ErrorKind::IsADirectory | ErrorKind::InvalidFilename | ErrorKind::InvalidInput => SinkErrorKind::Rejected,
        _ => SinkErrorKind::Fatal,
    };
    let hint = match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            " (the disk is full: the run stops, no memory is charged, and the next run continues once there is space)"
        }
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem | ErrorKind::NotADirectory => {
            "; check lightrag.direct.working_dir"
        }
        _ => "",
    };
    SinkError { kind, message: format!("{action} {}: {error}{hint}", path.display()) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_bounded_and_recognised() {
        let name = temp_name("memory_C_1.txt");
        assert!(name.starts_with(".memory_C_1.txt.tmp-"), "{name}");
        assert!(is_temp_name(&name));
        assert!(!name.ends_with(".txt"));
        assert!(!is_temp_name("memory_C_1.txt"));
        assert!(temp_name(&"é".repeat(200)).len() < 255);
    }

    #[test]
    fn environment_failures_stop_the_run_and_only_name_problems_are_the_memory_s() {
        let p = Path::new("/x/y");
        // As the kernel reports them: ENOSPC, EDQUOT, EROFS, EIO, EMFILE, ENFILE, ENOMEM, EACCES, ENOTDIR, ENOENT.
        for errno in [28, 122, 30, 5, 24, 23, 12, 13, 20, 2] {
            let error = io_error("writing", p, io::Error::from_raw_os_error(errno));
            assert_eq!(error.kind, SinkErrorKind::Fatal, "errno {errno}: {}", error.message);
            assert!(error.message.contains("/x/y"), "{}", error.message);
        }
        // ENAMETOOLONG, EISDIR, EINVAL: this document's name.
        for errno in [36, 21, 22] {
            assert_eq!(io_error("w", p, io::Error::from_raw_os_error(errno)).kind, SinkErrorKind::Rejected, "{errno}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_enospc_from_the_kernel_stops_the_run() {
        // /dev/full answers every write with ENOSPC.
        let error = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .and_then(|mut f| f.write_all(b"x").and_then(|()| f.sync_all()))
            .expect_err("/dev/full is full");
        let error = io_error("writing", Path::new("/dev/full"), error);
        assert_eq!(error.kind, SinkErrorKind::Fatal);
        assert!(error.message.contains("disk is full"), "{}", error.message);
    }
}
