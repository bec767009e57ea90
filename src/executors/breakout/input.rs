//! The files a breakout reads, and how it opens them.
//!
//! A path named by a request (or stored when a dictionary was registered) is read only if
//! it is a regular file: a device such as `/dev/zero` never ends, a FIFO blocks whoever
//! opens it, a directory or a socket is no data. The resolved path is checked before
//! anything is opened; it is then opened without blocking and without following a final
//! symbolic link, and the opened file must be the very file that was checked, so a path
//! swapped in between is refused rather than read.
//!
//! Uploaded data lives in the database (so any replica can run the job); a run copies it
//! into a temporary file, a chunk at a time, and reads that.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::store::breakout::DataKind;

/// What a request or a job is told about a file it may not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path} was replaced while it was being opened")]
    Replaced { path: String },
    #[error("{path} now resolves to {target}: it was moved or replaced by a link since it was registered")]
    Moved { path: String, target: String },
}

/// An open regular file, with the resolved path it was opened at.
#[derive(Debug)]
pub struct RegularFile {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
}

/// `path` with `..` and every symbolic link resolved (the file must exist).
pub async fn resolve(path: &str) -> Result<PathBuf, FileError> {
    let owned = path.to_owned();
    blocking(move || {
        std::fs::canonicalize(&owned).map_err(|source| FileError::Unreadable {
            path: owned.clone(),
            source,
        })
    })
    .await
}

/// Opens `resolved` (a path from [`resolve`]) if it is a regular file. Never blocks on a
/// FIFO and never reads a device.
pub async fn open_regular(resolved: PathBuf) -> Result<RegularFile, FileError> {
    blocking(move || open_regular_now(resolved)).await
}

/// Opens a path stored at registration (already resolved then), refusing it if it now
/// resolves elsewhere: a link swapped in since would otherwise lead the job to a device,
/// or out of the directory files must lie in.
pub async fn reopen_registered(path: &str) -> Result<RegularFile, FileError> {
    let resolved = resolve(path).await?;
    if resolved != Path::new(path) {
        return Err(FileError::Moved {
            path: path.to_owned(),
            target: resolved.display().to_string(),
        });
    }
    open_regular(resolved).await
}

fn open_regular_now(path: PathBuf) -> Result<RegularFile, FileError> {
    let shown = || path.display().to_string();
    let unreadable = |source| FileError::Unreadable {
        path: shown(),
        source,
    };
    let checked = std::fs::symlink_metadata(&path).map_err(unreadable)?;
    regular(&checked).map_err(|kind| FileError::NotRegular {
        path: shown(),
        kind,
    })?;
    // Non-blocking, so that a FIFO put in its place cannot hold the open; no final link
    // followed, so that a link put in its place is an error.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => FileError::Replaced { path: shown() },
            _ => unreadable(source),
        })?;
    let opened = file.metadata().map_err(unreadable)?;
    if regular(&opened).is_err() || !same_file(&checked, &opened) {
        return Err(FileError::Replaced { path: shown() });
    }
    Ok(RegularFile {
        len: opened.len(),
        path,
        file,
    })
}

/// `Err` names what the file is when it is not a regular file.
fn regular(metadata: &Metadata) -> Result<(), &'static str> {
    let t = metadata.file_type();
    match () {
        _ if t.is_file() => Ok(()),
        _ if t.is_dir() => Err("directory"),
        _ if t.is_char_device() => Err("character device"),
        _ if t.is_block_device() => Err("block device"),
        _ if t.is_fifo() => Err("FIFO"),
        _ if t.is_socket() => Err("socket"),
        _ if t.is_symlink() => Err("symbolic link"),
        _ => Err("special file"),
    }
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

impl RegularFile {
    /// The whole file, if it holds at most `limit` bytes (checked before reading, and
    /// again while reading, in case it grows).
    pub async fn read_all(self, limit: u64) -> Result<Vec<u8>, FileError> {
        let too_large = move |path: &Path, size| FileError::TooLarge {
            path: path.display().to_string(),
            size,
            limit,
        };
        if self.len > limit {
            return Err(too_large(&self.path, self.len));
        }
        blocking(move || {
            let mut bytes = Vec::with_capacity(self.len as usize);
            (&self.file)
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| FileError::Unreadable {
                    path: self.path.display().to_string(),
                    source,
                })?;
            if bytes.len() as u64 > limit {
                return Err(too_large(&self.path, bytes.len() as u64));
            }
            Ok(bytes)
        })
        .await
    }

    /// Whether the file is text data or a CSPro SQLite file, from its first bytes (read
    /// at their offset: the file's own position is left where it was).
    pub async fn data_kind(&self) -> Result<DataKind, FileError> {
        let file = self
            .file
            .try_clone()
            .map_err(|source| self.unreadable(source))?;
        let path = self.path.display().to_string();
        blocking(move || {
            let mut head = [0; SQLITE_MAGIC.len()];
            let mut filled = 0;
            while filled < head.len() {
                match file.read_at(&mut head[filled..], filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(FileError::Unreadable { path, source }),
                }
            }
            Ok(data_kind(&head[..filled]))
        })
        .await
    }

    /// Fails if the path no longer names the file that was opened: for readers (SQLite)
    /// that open the path themselves.
    pub async fn still_in_place(&self) -> Result<(), FileError> {
        let (path, opened) = (
            self.path.clone(),
            self.file
                .metadata()
                .map_err(|source| self.unreadable(source))?,
        );
        blocking(move || match std::fs::symlink_metadata(&path) {
            Ok(now) if same_file(&now, &opened) => Ok(()),
            _ => Err(FileError::Replaced {
                path: path.display().to_string(),
            }),
        })
        .await
    }

    fn unreadable(&self, source: std::io::Error) -> FileError {
        FileError::Unreadable {
            path: self.path.display().to_string(),
            source,
        }
    }
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// What the first bytes of a data file say it is.
fn data_kind(head: &[u8]) -> DataKind {
    if head.starts_with(SQLITE_MAGIC) {
        DataKind::Csdb
    } else {
        DataKind::Dat
    }
}

/// A file in the temporary directory, readable by this process only and removed when
/// dropped: where an upload is received, and where a run copies uploaded data.
pub fn temporary_file() -> std::io::Result<(tokio::fs::File, tempfile::TempPath)> {
    let (file, path) = tempfile::Builder::new()
        .prefix("relais-breakout-")
        .tempfile()?
        .into_parts();
    Ok((tokio::fs::File::from_std(file), path))
}

/// Runs file-system calls off the async threads: a slow disk or network mount must not
/// stall the server.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(FileError::Unreadable {
                path: String::new(),
                source: std::io::Error::other("the server is shutting down"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_kind(result: Result<RegularFile, FileError>) -> String {
        match result {
            Err(FileError::NotRegular { kind, .. }) => kind.to_owned(),
            Err(other) => format!("other: {other}"),
            Ok(_) => "opened".to_owned(),
        }
    }

    #[tokio::test]
    async fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let regular = dir.path().join("data.dat");
        std::fs::write(&regular, "SQLite format 3\0rest").unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();

        let opened = open_regular(resolve(regular.to_str().unwrap()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(opened.len, 20);
        assert_eq!(opened.data_kind().await.unwrap(), DataKind::Csdb);
        assert!(matches!(
            opened.read_all(10).await,
            Err(FileError::TooLarge { size: 20, .. })
        ));

        let kind = |p: PathBuf| async move {
            refused_kind(open_regular(resolve(p.to_str().unwrap()).await.unwrap()).await)
        };
        assert_eq!(kind(fifo.clone()).await, "FIFO");
        assert_eq!(kind(dir.path().to_path_buf()).await, "directory");
        assert_eq!(kind(link.clone()).await, "character device");
        assert_eq!(kind("/dev/urandom".into()).await, "character device");
        // A link put where a resolved path was is not followed.
        assert!(matches!(
            open_regular(link.clone()).await,
            Err(FileError::NotRegular {
                kind: "symbolic link",
                ..
            })
        ));
        // A registered path that has become a link is refused with where it leads.
        std::fs::remove_file(&regular).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &regular).unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap().join("data.dat");
        match reopen_registered(canonical.to_str().unwrap()).await {
            Err(FileError::Moved { target, .. }) => assert_eq!(target, "/dev/zero"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_fifo_swapped_in_after_the_check_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // The check of the opened file alone refuses it, and the open does not block.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&fifo)
            .unwrap();
        assert_eq!(regular(&file.metadata().unwrap()), Err("FIFO"));
    }
}
