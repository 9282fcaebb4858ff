//! The workstation's `FileSource`: a directory on disk.

use normtune_core::source::FileSource;
use normtune_core::{Error, Result};
use std::path::PathBuf;

/// A model or data folder on disk; or, for a llama.cpp GGUF pair, the HF folder assembled from
/// it in memory ([`DirSource::open_model`]).
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
    assembled: Option<std::sync::Arc<normtune_core::models::mmproj::GgufPair>>,
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
        Ok(Self {
            root,
            assembled: None,
        })
    }

    /// `--model`: a HF model folder; or a llama.cpp LLaVA pair, as `DECODER.gguf,MMPROJ.gguf` or
    /// a folder holding the two `.gguf` files (and no `config.json`), told apart by their
    /// `general.architecture` (`clip` is the mmproj). The pair becomes an ordinary HF LLaVA
    /// folder, its weight shards dequantised one decoder layer at a time as loading reads them
    /// (peak about the f32 model's size).
    pub fn open_model(path: &std::path::Path) -> Result<Self> {
        let arg = path.to_string_lossy();
        let files: Vec<PathBuf> = if arg.contains(',') && !path.exists() {
            arg.split(',').map(PathBuf::from).collect()
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else if path.is_dir() && !path.join("config.json").exists() {
            let mut g: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::Missing {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
                })
                .collect();
            g.sort();
            if g.is_empty() {
                return Self::open(path);
            }
            g
        } else {
            return Self::open(path);
        };
        if files.len() != 2 {
            return Err(Error::Input(format!(
                "{arg}: a llama.cpp LLaVA model is two GGUF files, the decoder and its mmproj \
                 (DECODER.gguf,MMPROJ.gguf or a folder holding both); {} given",
                files.len()
            )));
        }
        let mut decoder = None;
        let mut mmproj = None;
        for f in &files {
            let file = f.display().to_string();
            let g = normtune_core::gguf::Gguf::parse(read_file(f)?, &file)?;
            let clip = g
                .get("general.architecture")
                .and_then(normtune_core::gguf::Value::as_str)
                == Some("clip");
            let slot = if clip { &mut mmproj } else { &mut decoder };
            if slot.is_some() {
                return Err(Error::Input(format!(
                    "{arg}: two {} files; one decoder and one mmproj (general.architecture \
                     `clip`) are needed",
                    if clip { "mmproj" } else { "decoder" }
                )));
            }
            *slot = Some((g, file));
        }
        let (Some((d, dfile)), Some((m, mfile))) = (decoder, mmproj) else {
            unreachable!("two files, neither slot filled twice");
        };
        let pair = normtune_core::models::mmproj::GgufPair::new(d, &dfile, &m, &mfile)?;
        Ok(Self {
            root: PathBuf::from(format!("{dfile} + {mfile}")),
            assembled: Some(std::sync::Arc::new(pair)),
        })
    }
}

impl FileSource for DirSource {
    async fn read(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(m) = &self.assembled {
            return m.read(name).await;
        }
        let path = self.root.join(name);
        std::fs::read(&path).map_err(|e| Error::Missing {
            file: path.display().to_string(),
            reason: e.to_string(),
        })
    }
    async fn exists(&self, name: &str) -> bool {
        match &self.assembled {
            Some(m) => m.exists(name).await,
            None => self.root.join(name).is_file(),
        }
    }
    fn describe(&self, name: &str) -> String {
        if let Some(m) = &self.assembled {
            return m.describe(name);
        }
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

/// `--model`: a folder, or `org/name[@revision]` found offline in the HuggingFace cache as
/// `huggingface_hub` lays it out (`models--org--name/refs/<revision>` naming the commit,
/// `snapshots/<commit>/` holding the files; the revision defaults to `main`, and may be a commit
/// hash). The caches looked in, in order: `$HF_HUB_CACHE`, `$HF_HOME/hub`,
/// `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`. Nothing is downloaded.
pub fn model_path(arg: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(arg);
    if path.exists() {
        return Ok(path);
    }
    // A llama.cpp pair: DECODER.gguf,MMPROJ.gguf (opened by `DirSource::open_model`).
    if arg.contains(',') {
        return match arg.split(',').find(|p| !std::path::Path::new(p).is_file()) {
            Some(p) => Err(format!("{p}: no such file (in `{arg}`)")),
            None => Ok(path),
        };
    }
    let (repo, rev) = arg.split_once('@').unwrap_or((arg, "main"));
    let id_part = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let is_repo =
        matches!(repo.split_once('/'), Some((org, name)) if id_part(org) && id_part(name));
    if !is_repo || rev.is_empty() || rev.contains("..") {
        return Err(format!("{arg}: no such folder"));
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut caches: Vec<PathBuf> = Vec::new();
    caches.extend(env("HF_HUB_CACHE"));
    caches.extend(env("HF_HOME").map(|h| h.join("hub")));
    caches.extend(env("XDG_CACHE_HOME").map(|h| h.join("huggingface/hub")));
    caches.extend(env("HOME").map(|h| h.join(".cache/huggingface/hub")));
    caches.dedup();
    let folder = format!("models--{}", repo.replace('/', "--"));
    for cache in &caches {
        let root = cache.join(&folder);
        if !root.is_dir() {
            continue;
        }
        let commit = match std::fs::read_to_string(root.join("refs").join(rev)) {
            Ok(sha) => sha.trim().to_string(),
            Err(_) => rev.to_string(),
        };
        let snapshot = root.join("snapshots").join(&commit);
        if !commit.contains('/') && snapshot.is_dir() {
            return Ok(snapshot);
        }
        return Err(format!(
            "{arg}: {} holds no snapshot for revision `{rev}` (no refs/{rev}, no snapshots/{rev})",
            root.display()
        ));
    }
    let looked: Vec<String> = caches
        .iter()
        .map(|c| c.join(&folder).display().to_string())
        .collect();
    Err(format!(
        "{arg}: not a folder, and not in the HuggingFace cache (looked in {}); \
         nothing is downloaded: copy the model folder here or fill the cache on a connected machine",
        looked.join(", ")
    ))
}
