//! Where bytes come from. The core never opens files: the native shell reads a directory, the
//! browser reads dropped files or OPFS, tests read memory.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// A read-only folder of named files (a HF model folder, a dataset folder).
#[allow(async_fn_in_trait)]
pub trait FileSource {
    /// Reads the whole file `name` (a path relative to the folder).
    async fn read(&self, name: &str) -> Result<Vec<u8>>;
    /// Whether `name` exists.
    async fn exists(&self, name: &str) -> bool;
    /// A human-readable location for error messages, e.g. the folder path.
    fn describe(&self, name: &str) -> String {
        name.to_string()
    }
}

/// Files held in memory: the browser's dropped files and the tests' fixtures.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemorySource {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds (or replaces) a file.
    pub fn insert(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), bytes);
    }
    /// Removes a file, returning its bytes.
    pub fn remove(&mut self, name: &str) -> Option<Vec<u8>> {
        self.files.remove(name)
    }
}

impl FileSource for MemorySource {
    async fn read(&self, name: &str) -> Result<Vec<u8>> {
        self.files.get(name).cloned().ok_or_else(|| Error::Missing {
            file: name.to_string(),
            reason: "no such file".into(),
        })
    }
    async fn exists(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }
}
