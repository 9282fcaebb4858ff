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
    /// Every file, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
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

/// The most a zip may unpack to, in all (the browser worker has 4 GiB of memory at most).
pub const MAX_UNZIPPED: u64 = 2 << 30;

/// The files of a zip (`name` is the zip's own name, for messages), folders left out; paths use
/// `/`. Refused: an entry whose path leaves the folder (`../x`, `/etc/x`), and a zip that
/// unpacks to more than `limit` bytes, checked while unpacking (a zip's declared sizes are not
/// trusted, so a zip bomb stops at the limit).
pub fn unzip(name: &str, bytes: Vec<u8>, limit: u64) -> Result<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let bad = |reason: String| Error::Input(format!("{name}: {reason}"));
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a zip file: {e}")))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let Some(path) = f
            .enclosed_name()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
        else {
            return Err(bad(format!(
                "entry `{}` is not a plain relative path",
                f.name()
            )));
        };
        let room = limit - total;
        // The declared size only sizes the first allocation, never beyond what is left.
        let mut v = Vec::with_capacity(f.size().min(room).min(64 << 20) as usize);
        (&mut f)
            .take(room + 1)
            .read_to_end(&mut v)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        if v.len() as u64 > room {
            return Err(bad(format!(
                "unpacks to more than {} MiB; unpack it and choose the folder instead",
                limit >> 20
            )));
        }
        total += v.len() as u64;
        out.push((path, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (k, v) in files {
            z.start_file(*k, opts).unwrap();
            std::io::Write::write_all(&mut z, v).unwrap();
        }
        z.finish().unwrap();
        drop(z);
        buf.into_inner()
    }

    #[test]
    fn unzips_files_and_stops_a_bomb_at_the_limit() {
        let z = zip_of(&[("data/a.txt", b"alpha"), ("data/b.bin", &[7u8; 1000])]);
        let files = unzip("d.zip", z, MAX_UNZIPPED).unwrap();
        assert_eq!(files[0], ("data/a.txt".to_string(), b"alpha".to_vec()));
        assert_eq!(files[1].1.len(), 1000);
        // 4 MiB of zeros deflates to a few KB; with a 1 MiB limit it is refused.
        let bomb = zip_of(&[("zeros", &vec![0u8; 4 << 20])]);
        assert!(bomb.len() < 64 << 10);
        let e = unzip("bomb.zip", bomb, 1 << 20).unwrap_err().to_string();
        assert_eq!(
            e,
            "bomb.zip: unpacks to more than 1 MiB; unpack it and choose the folder instead"
        );
        let e = unzip("x.zip", b"PK not really".to_vec(), MAX_UNZIPPED).unwrap_err();
        assert!(e.to_string().starts_with("x.zip: not a zip file"), "{e}");
    }
}
