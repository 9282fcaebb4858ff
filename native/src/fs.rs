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

/// Writes `files` as the folder `dir` atomically: into a temporary sibling first, renamed into
/// place at the end, removed on failure, so no half-written folder is ever left behind.
pub fn write_folder_atomic(
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        for (n, b) in files {
            std::fs::write(tmp.join(n), b)?;
        }
        std::fs::rename(&tmp, dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!("{}: cannot write: {e}", dir.display());
    }
    Ok(())
}
