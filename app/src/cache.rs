//! Models kept in the browser, on the user's request only: the Origin Private File System (OPFS),
//! one directory per model under `normtune-models/`, holding the model folder's files and a
//! `normtune-cache.json` manifest written last. A directory without a manifest (a write cut short)
//! is never loaded; it is listed as incomplete so it can be deleted. Works in the worker and on
//! the page (the component tests run it on the page).
//!
//! Quota: the browser decides how much an origin may store (`navigator.storage.estimate()`); a
//! write past it fails with `QuotaExceededError`, which becomes one line saying how much was
//! needed and how much is left, and the partial directory is removed.

use crate::protocol::{CachedModel, Files};
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemRemoveOptions, FileSystemWritableFileStream,
    StorageManager,
};

/// The top directory in the origin's private file system.
pub const ROOT: &str = "normtune-models";
/// Written after every file: a directory without it is incomplete.
pub const MANIFEST: &str = "normtune-cache.json";
/// Bytes handed to one `write()`. Chromium moves each write's bytes through a data pipe of at
/// most 2 MiB; a larger write can be cut off by a full quota while its bytes are still flowing,
/// and is then reported as `AbortError: Failed to write data to data pipe` instead of
/// `QuotaExceededError` (seen in CI). A write that fits in the pipe is reported by the file
/// writer, which names the quota.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    name: String,
    files: Vec<(String, u64)>,
    saved_ms: f64,
}

/// The storage manager of this global (window or worker).
fn storage() -> Result<StorageManager, String> {
    let nav = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .map_err(|_| "this browser has no `navigator`".to_string())?;
    let st = js_sys::Reflect::get(&nav, &"storage".into()).unwrap_or(JsValue::UNDEFINED);
    if st.is_undefined() {
        return Err(
            "this browser has no storage manager (`navigator.storage`): models cannot be kept"
                .into(),
        );
    }
    Ok(st.unchecked_into())
}

/// A JS exception as one line: its name and message.
fn js_err(e: JsValue) -> String {
    let get = |k: &str| {
        js_sys::Reflect::get(&e, &k.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    match (get("name"), get("message")) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        _ => format!("{e:?}"),
    }
}

fn is_quota(e: &JsValue) -> bool {
    js_sys::Reflect::get(e, &"name".into())
        .ok()
        .and_then(|v| v.as_string())
        .is_some_and(|n| n == "QuotaExceededError")
}

async fn wait(p: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// `(used, quota)` bytes for this origin, as the browser estimates them.
pub async fn estimate() -> Option<(f64, f64)> {
    let st = storage().ok()?;
    let e: web_sys::StorageEstimate = wait(st.estimate().ok()?).await.ok()?.unchecked_into();
    Some((e.get_usage()?, e.get_quota()?))
}

/// The origin's private file system.
async fn top() -> Result<FileSystemDirectoryHandle, String> {
    Ok(wait(storage()?.get_directory())
        .await
        .map_err(|e| {
            format!(
                "the browser's private file system is unavailable: {}",
                js_err(e)
            )
        })?
        .unchecked_into())
}

async fn root(create: bool) -> Result<Option<FileSystemDirectoryHandle>, String> {
    let top = top().await?;
    let opts = FileSystemGetDirectoryOptions::new();
    opts.set_create(create);
    match wait(top.get_directory_handle_with_options(ROOT, &opts)).await {
        Ok(d) => Ok(Some(d.unchecked_into())),
        Err(_) if !create => Ok(None),
        Err(e) => Err(format!(
            "cannot create `{ROOT}` in the browser's storage: {}",
            js_err(e)
        )),
    }
}

/// The directory name a model is kept under (OPFS names cannot hold `/` or `\`, nor be `.`/`..`).
pub fn dir_name(model: &str) -> String {
    let s: String = model
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.trim() {
        "" | "." | ".." => "model".into(),
        t => t.to_string(),
    }
}

async fn dir(
    parent: &FileSystemDirectoryHandle,
    name: &str,
    create: bool,
) -> Result<FileSystemDirectoryHandle, JsValue> {
    let opts = FileSystemGetDirectoryOptions::new();
    opts.set_create(create);
    Ok(wait(parent.get_directory_handle_with_options(name, &opts))
        .await?
        .unchecked_into())
}

async fn read_file(d: &FileSystemDirectoryHandle, name: &str) -> Result<Vec<u8>, JsValue> {
    let opts = FileSystemGetFileOptions::new();
    let h: FileSystemFileHandle = wait(d.get_file_handle_with_options(name, &opts))
        .await?
        .unchecked_into();
    let file: web_sys::File = wait(h.get_file()).await?.unchecked_into();
    let buf = wait(file.array_buffer()).await?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

async fn write_file(
    d: &FileSystemDirectoryHandle,
    name: &str,
    bytes: &[u8],
) -> Result<(), JsValue> {
    let opts = FileSystemGetFileOptions::new();
    opts.set_create(true);
    let h: FileSystemFileHandle = wait(d.get_file_handle_with_options(name, &opts))
        .await?
        .unchecked_into();
    let w: FileSystemWritableFileStream = wait(h.create_writable()).await?.unchecked_into();
    for chunk in bytes.chunks(CHUNK) {
        // A copy in JS memory: a view into wasm memory could move if it grows while we wait.
        let arr = js_sys::Uint8Array::from(chunk);
        if let Err(e) = wait(w.write_with_js_u8_array(&arr)?).await {
            let _ = wait(w.abort()).await;
            return Err(e);
        }
    }
    wait(w.close()).await?;
    Ok(())
}

async fn remove(parent: &FileSystemDirectoryHandle, name: &str) -> Result<(), JsValue> {
    let opts = FileSystemRemoveOptions::new();
    opts.set_recursive(true);
    wait(parent.remove_entry_with_options(name, &opts)).await?;
    Ok(())
}

/// The names in a directory.
async fn names(d: &FileSystemDirectoryHandle) -> Result<Vec<String>, String> {
    let it = d.keys();
    let mut out = Vec::new();
    loop {
        let next = wait(it.next().map_err(js_err)?).await.map_err(js_err)?;
        let done = js_sys::Reflect::get(&next, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Ok(out);
        }
        if let Some(s) = js_sys::Reflect::get(&next, &"value".into())
            .ok()
            .and_then(|v| v.as_string())
        {
            out.push(s);
        }
    }
}

/// Every kept model, by name. Incomplete directories are listed with `complete: false`.
pub async fn list() -> Result<Vec<CachedModel>, String> {
    let Some(root) = root(false).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut entries = names(&root).await?;
    entries.sort();
    for key in entries {
        let Ok(d) = dir(&root, &key, false).await else {
            continue; // a stray file, not ours
        };
        let manifest = read_file(&d, MANIFEST)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        out.push(match manifest {
            Some(m) => CachedModel {
                key,
                name: m.name,
                bytes: m.files.iter().map(|(_, n)| n).sum(),
                files: m.files.len(),
                saved_ms: m.saved_ms,
                complete: true,
            },
            None => CachedModel {
                name: key.clone(),
                key,
                bytes: 0,
                files: 0,
                saved_ms: 0.0,
                complete: false,
            },
        });
    }
    Ok(out)
}

/// Keeps `files` as model `name` (replacing an earlier copy). On any failure nothing of it is
/// left behind.
pub async fn save(name: &str, files: &[(&str, &[u8])]) -> Result<(), String> {
    let root = root(true).await?.ok_or("no cache directory")?;
    let key = dir_name(name);
    let _ = remove(&root, &key).await; // an older copy: the new one replaces it
    let need: usize = files.iter().map(|(_, b)| b.len()).sum();
    let result = async {
        let d = dir(&root, &key, true).await?;
        for (file, bytes) in files {
            write_file(&d, file, bytes).await?;
        }
        let manifest = Manifest {
            name: name.to_string(),
            files: files
                .iter()
                .map(|(f, b)| (f.to_string(), b.len() as u64))
                .collect(),
            saved_ms: js_sys::Date::now(),
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_file(&d, MANIFEST, &json).await
    }
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = remove(&root, &key).await;
            drop_root_if_empty(&root).await;
            if is_quota(&e) {
                let reported = match estimate().await {
                    Some((used, quota)) => format!(
                        "it reports {:.1} MB used of {:.1} MB",
                        used / 1e6,
                        quota / 1e6
                    ),
                    None => "it does not report its quota".into(),
                };
                Err(format!(
                    "browser storage is full: the browser refused to keep `{name}` ({:.1} MB; QuotaExceededError, {reported}); nothing was kept. Delete kept models or free disk space; the model stays loaded for this visit",
                    need as f64 / 1e6
                ))
            } else {
                Err(format!(
                    "could not keep `{name}` in the browser: {}",
                    js_err(e)
                ))
            }
        }
    }
}

/// The files of kept model `key` and its name. Checks each file against the manifest's size.
pub async fn load(key: &str) -> Result<(String, Files), String> {
    let root = root(false)
        .await?
        .ok_or_else(|| format!("no model `{key}` is kept in this browser"))?;
    let d = dir(&root, key, false)
        .await
        .map_err(|_| format!("no model `{key}` is kept in this browser"))?;
    let manifest: Manifest = match read_file(&d, MANIFEST).await {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("{ROOT}/{key}/{MANIFEST}: {e}; delete this kept model"))?,
        Err(_) => {
            return Err(format!(
                "{ROOT}/{key}: incomplete (its {MANIFEST} is missing; the write was cut short): delete it and keep the model again"
            ));
        }
    };
    let mut files = Vec::new();
    for (file, size) in &manifest.files {
        let bytes = read_file(&d, file)
            .await
            .map_err(|e| format!("{ROOT}/{key}/{file}: cannot read it: {}", js_err(e)))?;
        if bytes.len() as u64 != *size {
            return Err(format!(
                "{ROOT}/{key}/{file}: {} bytes, the manifest says {size}: delete this kept model and keep it again",
                bytes.len()
            ));
        }
        files.push((file.clone(), bytes));
    }
    Ok((manifest.name, files))
}

/// Deletes kept model `key` (and the top directory once it is empty).
pub async fn delete(key: &str) -> Result<(), String> {
    let Some(root) = root(false).await? else {
        return Ok(());
    };
    remove(&root, key).await.map_err(|e| {
        format!(
            "could not delete `{key}` from the browser's storage: {}",
            js_err(e)
        )
    })?;
    drop_root_if_empty(&root).await;
    Ok(())
}

/// Removes `normtune-models/` when nothing is in it, so deleting every model leaves the origin's
/// storage as it was.
async fn drop_root_if_empty(root: &FileSystemDirectoryHandle) {
    if names(root).await.is_ok_and(|n| n.is_empty())
        && let Ok(top) = top().await
    {
        let _ = remove(&top, ROOT).await;
    }
}
