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
