//! Private files: what only the daemon's own user may read, whatever the umask.
//!
//! The data directory is created 0700 ([`private_dir`]); the job store (prompts and
//! answers) is 0600 ([`private_file`]), and SQLite gives its `-wal` and `-shm` files the
//! database's mode; key and token files are written 0600 ([`write_private`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of the data directory when the daemon creates it.
pub const DIR_MODE: u32 = 0o700;

/// The mode of the job store and of every secret file.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and its missing parents) with mode 0700; an existing directory is left as
/// it is (under systemd, `StateDirectoryMode=` decides).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Make sure `path` exists with mode 0600 (created empty if absent; an existing file's
/// mode is narrowed), before a library such as SQLite opens it.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

/// Write `text` to `path` with mode 0600: created new (an existing file is
/// [`std::io::ErrorKind::AlreadyExists`]) unless `overwrite`.
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(FILE_MODE);
    if overwrite {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path)?;
    // An overwritten file keeps its old mode: set it.
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_do_not_follow_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        let db = data.join("jobs.sqlite");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"x");
        let key = data.join("key");
        write_private(&key, "k", false).unwrap();
        assert_eq!(mode(&key), 0o600);
        let e = write_private(&key, "k2", false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&key, "k2", true).unwrap();
        assert_eq!(
            (mode(&key), std::fs::read_to_string(&key).unwrap()),
            (0o600, "k2".into())
        );
    }
}
