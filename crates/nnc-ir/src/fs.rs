//! The one way nnc writes a file: atomically and durably, so that a failure, a crash
//! or a power loss never leaves a partial file, and an existing file is only ever
//! replaced by a complete new one. Models, training steps, object files, headers,
//! NPY arrays, plots and checkpoints all go through [`write_atomically`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `path` with `write`: to a new temporary file in the same directory (named
/// `.<file name>.<pid>.<n>.tmp`, created exclusively, with the usual mode of a new
/// file), flushed to disk (`fsync`), renamed over `path` (atomic on POSIX file
/// systems), and the directory flushed so the rename itself is durable. On an error
/// the temporary file is removed and `path` is as it was.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = directory_of(path);
    let name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The temporary files a crashed [`write_atomically`] of `path` left behind.
pub fn leftover_temporaries(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name() else { return Ok(Vec::new()) };
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut found = Vec::new();
    for entry in fs::read_dir(directory_of(path))? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; its renames are journaled by NTFS.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nnc-fs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = scratch("failed");
        let path = dir.join("out.bin");
        write_atomically(&path, |f| f.write_all(b"old")).unwrap();
        let e = write_atomically(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(leftover_temporaries(&path).unwrap().is_empty());
        write_atomically(&path, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_are_found_by_name() {
        let dir = scratch("leftovers");
        let path = dir.join("checkpoint.nnc");
        fs::write(dir.join(".checkpoint.nnc.123.0.tmp"), b"torn").unwrap();
        fs::write(dir.join(".other.123.0.tmp"), b"not ours").unwrap();
        assert_eq!(leftover_temporaries(&path).unwrap(), [dir.join(".checkpoint.nnc.123.0.tmp")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_mode_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("model.onnx");
        write_atomically(&path, |f| f.write_all(b"x")).unwrap();
        File::create(dir.join("plain")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&dir.join("plain")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
