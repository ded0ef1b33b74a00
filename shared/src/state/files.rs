//! Files and folders that hold state or backups: the ledger, run history and
//! cached enrichments are the user's private data, so every one this build
//! creates is owner-only (files 0600, folders 0700) whatever the umask.
//! Existing files keep the permissions someone gave them.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Permissions of a state or backup file this build creates.
pub const FILE_MODE: u32 = 0o600;
/// Permissions of a folder this build creates for state or backups.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents owner-only (existing ones are left as they are).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Creates the parent folder of `path` owner-only when it is missing.
pub fn create_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => create_dir_all(dir),
        None => Ok(()),
    }
}

/// Open options that create a missing file owner-only.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// `path` with `suffix` appended to its file name (`state.json` -> `state.json.tmp`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `bytes` to `to` atomically and owner-only: a temporary file
/// beside it, flushed, renamed over it, and the folder flushed.
pub fn write_atomically(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(to, ".tmp");
    let written = (|| {
        let mut file = options().write(true).create(true).truncate(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_parent(to)
}

/// Flushes the folder holding `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn new_files_and_folders_are_owner_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("a/b/state.json");
        create_parent_dir(&file).unwrap_or_else(|e| panic!("{e}"));
        write_atomically(&file, b"{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&file), FILE_MODE);
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        assert_eq!(mode(&dir.path().join("a/b")), DIR_MODE);
        assert!(!with_suffix(&file, ".tmp").exists());
    }
}
