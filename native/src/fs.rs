//! The workstation's `FileSource`: a directory on disk.

use normtune_core::source::FileSource;
use normtune_core::{Error, Result};
use std::path::PathBuf;

/// A model or data folder on disk.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A folder that must exist.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::Missing {
                file: root.display().to_string(),
                reason: "not a directory".into(),
            });
        }
        Ok(Self { root })
    }
}

impl FileSource for DirSource {
    async fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.root.join(name);
        std::fs::read(&path).map_err(|e| Error::Missing {
            file: path.display().to_string(),
            reason: e.to_string(),
        })
    }
    async fn exists(&self, name: &str) -> bool {
        self.root.join(name).is_file()
    }
    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

/// Reads a file the user named, with the path in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Missing {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes `files` as the folder `dir` atomically: into a temporary sibling first (each file
/// fsynced), renamed into place at the end, removed on failure, so no half-written folder is ever
/// left behind. `dir` must not exist yet.
pub fn write_folder_atomic(
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let tmp = staged(dir, files)?;
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!("{}: cannot write: {e}", dir.display());
    }
    sync_parent(dir);
    Ok(())
}

/// Like [`write_folder_atomic`], replacing `dir` if it exists: the old folder is moved aside
/// only once the new one is complete on disk, and removed after the new one is in place (a crash
/// in between leaves `.<name>.old` next to it, which [`recover_folder`] puts back).
pub fn replace_folder_atomic(
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let tmp = staged(dir, files)?;
    let old = sibling(dir, "old");
    let _ = std::fs::remove_dir_all(&old);
    let result = (|| -> std::io::Result<()> {
        if dir.exists() {
            std::fs::rename(dir, &old)?;
        }
        std::fs::rename(&tmp, dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!("{}: cannot write: {e}", dir.display());
    }
    sync_parent(dir);
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Puts back a folder [`replace_folder_atomic`] had moved aside when the process died between
/// its two renames.
pub fn recover_folder(dir: &std::path::Path) {
    let old = sibling(dir, "old");
    if !dir.exists() && old.is_dir() {
        let _ = std::fs::rename(&old, dir);
    }
}

/// Writes one file atomically (temporary sibling, fsync, rename).
pub fn write_file_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = sibling(path, &format!("tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("{}: cannot write: {e}", path.display());
    }
    sync_parent(path);
    Ok(())
}

fn sibling(path: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{tag}"))
}

/// Writes `files` into a fresh temporary sibling of `dir`, each file fsynced.
fn staged(
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<std::path::PathBuf> {
    let tmp = sibling(dir, &format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        for (n, b) in files {
            let rel = std::path::Path::new(n);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(std::io::Error::other(format!(
                    "`{n}` is not a plain relative file name"
                )));
            }
            if let Some(parent) = rel.parent() {
                std::fs::create_dir_all(tmp.join(parent))?;
            }
            let mut f = std::fs::File::create(tmp.join(n))?;
            std::io::Write::write_all(&mut f, b)?;
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!("{}: cannot write: {e}", dir.display());
    }
    Ok(tmp)
}

/// Makes a rename durable (best effort: not every filesystem supports fsync on a directory).
fn sync_parent(path: &std::path::Path) {
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(if parent.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            parent
        })
    {
        let _ = d.sync_all();
    }
}
