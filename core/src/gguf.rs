//! GGUF (llama.cpp's single-file model format, versions 2 and 3): metadata, tensor directory and
//! dequantisation to f32 of F32, F16, BF16, the legacy quants (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and
//! the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K: what `Q4_K_M`-style files hold), pinned to
//! gguf-py's reader and dequantiser by `tests/tests/gguf.rs` (fixtures from
//! `tests/fixtures/make_gguf_fixtures.py`, including the real SmolLM2-135M file).
//!
//! Written by hand, not with a GGUF crate: the file is untrusted, and the crates looked at
//! (`ggus`, candle's `gguf_file`) size allocations from the header's counts or divide by its
//! alignment unchecked. Here every count, length, shape and offset is checked against the bytes
//! the file actually has before anything is allocated (fuzzed: `tests/fuzz`, target `gguf`).

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The magic number, "GGUF" read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Nesting of arrays in metadata values (the format allows arrays of arrays).
const MAX_ARRAY_DEPTH: usize = 4;
/// Values in a K-quant super-block (ggml's QK_K).
const QK_K: u64 = 256;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integers (u8, u16, u32, u64).
    U64(u64),
    /// Signed integers (i8, i16, i32, i64).
    I64(i64),
    /// f32 (kept as read) and f64.
    F32(f32),
    /// f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a u64, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// The value as an f64, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }
    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A ggml tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: an f16 scale and 32 signed bytes.
    Q8_0,
    /// Blocks of 32: an f16 scale and 32 4-bit values offset by 8.
    Q4_0,
    /// Blocks of 32: an f16 scale, an f16 minimum and 32 4-bit values.
    Q4_1,
    /// Blocks of 32: an f16 scale and 32 5-bit values offset by 16.
    Q5_0,
    /// Blocks of 32: an f16 scale, an f16 minimum and 32 5-bit values.
    Q5_1,
    /// Super-blocks of 256: 16 sub-blocks of 2-bit values with 4-bit scales and minimums.
    Q2K,
    /// Super-blocks of 256: 3-bit values (2 low bits + a high-bit mask), 6-bit scales.
    Q3K,
    /// Super-blocks of 256: 8 sub-blocks of 4-bit values with 6-bit scales and minimums.
    Q4K,
    /// Super-blocks of 256: as Q4_K with a fifth bit per value.
    Q5K,
    /// Super-blocks of 256: 6-bit values, 16 signed 8-bit scales.
    Q6K,
    /// Super-blocks of 256: an f32 scale and 256 signed bytes (plus sums llama.cpp's dot products use).
    Q8K,
    /// Any other type, by its ggml number: listed, not dequantised.
    Other(u32),
}

impl GgmlType {
    fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::Bf16,
            other => Self::Other(other),
        }
    }
    /// (elements per block, bytes per block); `None` for a type this reader does not know.
    fn block(self) -> Option<(u64, u64)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q8_0 => (32, 34),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q2K => (QK_K, 84),
            Self::Q3K => (QK_K, 110),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
            Self::Q8K => (QK_K, 292),
            Self::Other(_) => return None,
        })
    }
    /// The name llama.cpp uses (`Q4_1`, ...).
    pub fn name(self) -> String {
        match self {
            Self::F32 => "F32".into(),
            Self::F16 => "F16".into(),
            Self::Bf16 => "BF16".into(),
            Self::Q8_0 => "Q8_0".into(),
            Self::Q4_0 => "Q4_0".into(),
            Self::Q4_1 => "Q4_1".into(),
            Self::Q5_0 => "Q5_0".into(),
            Self::Q5_1 => "Q5_1".into(),
            Self::Q2K => "Q2_K".into(),
            Self::Q3K => "Q3_K".into(),
            Self::Q4K => "Q4_K".into(),
            Self::Q5K => "Q5_K".into(),
            Self::Q6K => "Q6_K".into(),
            Self::Q8K => "Q8_K".into(),
            Self::Other(id) => format!("ggml type {id}"),
        }
    }
}

/// One tensor of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name (`blk.0.attn_norm.weight`).
    pub name: String,
    /// Shape in PyTorch order (slowest dimension first; GGUF stores it the other way round).
    pub shape: Vec<usize>,
    /// Type.
    pub kind: GgmlType,
    /// Byte range in the file (`None` for a type whose size this reader does not know).
    range: Option<std::ops::Range<usize>>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed GGUF file (it owns the bytes; tensors are dequantised on demand).
#[derive(Debug)]
pub struct Gguf {
    file: String,
    bytes: Vec<u8>,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
}

/// A bounds-checked little-endian reader over the file.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, what: &str) -> Error {
        Error::Weights {
            file: self.file.to_string(),
            reason: format!("not a valid GGUF file: {what} (at byte {})", self.pos),
        }
    }
    fn left(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.bad(&format!(
                "{what} needs {n} bytes but only {} remain",
                self.left()
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A count of items of at least `min_size` bytes each, checked against the bytes left.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.left() / min_size.max(1)) as u64 {
            return Err(self.bad(&format!(
                "{what} is {n}, more than the {} bytes left could hold",
                self.left()
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(1, what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.bad(&format!("{what} is not UTF-8")))
    }
    fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.array::<1>(key)?[0] as u64),
            1 => Value::I64(self.array::<1>(key)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.array(key)?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.array(key)?) as i64),
            4 => Value::U64(self.u32(key)? as u64),
            5 => Value::I64(i32::from_le_bytes(self.array(key)?) as i64),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.bad(&format!("`{key}`: bool byte {b}"))),
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.bad(&format!("`{key}`: arrays nested too deep")));
                }
                let item = self.u32(key)?;
                // The smallest encoding of one item, so that the count is checked before the
                // vector is sized: 1 byte for u8/i8/bool, 8 for a string or array header, ...
                let min = match item {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(self.bad(&format!("`{key}`: unknown array item type {other}")));
                    }
                };
                let n = self.count(min, key)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(item, depth + 1, key)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(self.bad(&format!("`{key}`: unknown value type {other}"))),
        })
    }
}

impl Gguf {
    /// Parses a GGUF file: header, metadata and tensor directory, every tensor's byte range
    /// checked to lie in the file. `file` names it in errors.
    pub fn parse(bytes: Vec<u8>, file: &str) -> Result<Self> {
        let mut c = Cursor {
            b: &bytes,
            pos: 0,
            file,
        };
        if c.take(4, "the magic number")? != MAGIC {
            return Err(c.bad("it does not start with `GGUF`"));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.bad(&format!("version {version} (2 and 3 are read)")));
        }
        // A tensor entry is at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset) bytes,
        // a metadata entry at least 8 (key length) + 4 (type) + 1.
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.count(13, "the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, 0, &key)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(c.bad(&format!("metadata key `{key}` appears twice")));
            }
        }
        if n_tensors > (c.left() / 24) as u64 {
            return Err(c.bad(&format!(
                "the tensor count is {n_tensors}, more than the {} bytes left could hold",
                c.left()
            )));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U64(a)) if a.is_power_of_two() => *a,
            Some(v) => {
                return Err(c.bad(&format!("general.alignment is {v:?}, not a power of two")));
            }
        };
        let mut entries = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims > MAX_DIMS {
                return Err(c.bad(&format!(
                    "tensor `{name}` has {n_dims} dimensions (at most 4)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&name)?);
            }
            let kind = GgmlType::from_id(c.u32(&name)?);
            let offset = c.u64(&name)?;
            if !names.insert(name.clone()) {
                return Err(c.bad(&format!("tensor `{name}` appears twice")));
            }
            entries.push((name, dims, kind, offset));
        }
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, dims, kind, offset) in entries {
            let bad = |reason: String| Error::Weights {
                file: file.to_string(),
                reason: format!("not a valid GGUF file: tensor `{name}` {reason}"),
            };
            // A known type takes at least 2.625 bits a value (Q2_K), any ggml type at least 1.
            let max = match kind.block() {
                Some(_) => data_len.saturating_mul(4),
                None => data_len.saturating_mul(8),
            };
            let fits = |n: u64| n <= max && usize::try_from(n).is_ok();
            let numel = dims
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .filter(|&n| fits(n) && dims.iter().all(|&d| fits(d)))
                .ok_or_else(|| bad(format!("has shape {dims:?}, larger than the file")))?;
            if offset % alignment != 0 {
                return Err(bad(format!(
                    "starts at {offset}, not a multiple of {alignment}"
                )));
            }
            let range = match kind.block() {
                None => None,
                Some((elems, size)) => {
                    if dims.first().is_some_and(|d| d % elems != 0) {
                        return Err(bad(format!(
                            "has rows of {} values, not a multiple of {elems} ({})",
                            dims[0],
                            kind.name()
                        )));
                    }
                    let n = numel / elems * size;
                    // Checked against the file's end, not only the data's length: the padding
                    // before the data can itself run past a truncated file (found by fuzzing:
                    // an empty tensor "starting" beyond the end).
                    let end = data_start
                        .checked_add(offset)
                        .and_then(|s| s.checked_add(n));
                    if end.is_none_or(|e| e > bytes.len() as u64) {
                        return Err(bad(format!(
                            "needs bytes {}..{} of the file but it has {}",
                            data_start.saturating_add(offset),
                            data_start.saturating_add(offset).saturating_add(n),
                            bytes.len()
                        )));
                    }
                    let start = (data_start + offset) as usize;
                    Some(start..start + n as usize)
                }
            };
            tensors.push(TensorInfo {
                name,
                shape: dims.iter().rev().map(|&d| d as usize).collect(),
                kind,
                range,
            });
        }
        Ok(Self {
            file: file.to_string(),
            bytes,
            version,
            metadata,
            tensors,
        })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned integer metadata value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::config(&self.file, key, "missing, or not a non-negative integer"))
    }

    /// A required number.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| Error::config(&self.file, key, "missing, or not a number"))
    }

    /// A tensor's directory entry.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's values as f32, in PyTorch (row-major) order, with its shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensor(name).ok_or_else(|| Error::Weights {
            file: self.file.clone(),
            reason: format!("no tensor `{name}`"),
        })?;
        Ok((t.shape.clone(), self.values(t)?))
    }

    /// The values of a tensor of this file's directory, as [`Self::dequantize`].
    pub fn values(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let name = &t.name;
        let Some(range) = t.range.clone() else {
            return Err(Error::Weights {
                file: self.file.clone(),
                reason: format!(
                    "tensor `{name}` is {}; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, \
                     Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K can be read",
                    t.kind.name()
                ),
            });
        };
        Ok(dequantize(t.kind, &self.bytes[range]))
    }
}

/// Dequantises whole blocks of `kind` (as gguf-py's `gguf.quants.dequantize`, in f32).
fn dequantize(kind: GgmlType, b: &[u8]) -> Vec<f32> {
    let f16 = |x: &[u8]| half::f16::from_le_bytes([x[0], x[1]]).to_f32();
    match kind {
        GgmlType::F32 => b
            .chunks_exact(4)
            .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
            .collect(),
        GgmlType::F16 => b.chunks_exact(2).map(f16).collect(),
        GgmlType::Bf16 => b
            .chunks_exact(2)
            .map(|x| half::bf16::from_le_bytes([x[0], x[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => b
            .chunks_exact(34)
            .flat_map(|blk| {
                let d = f16(blk);
                blk[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q4_0 => b
            .chunks_exact(18)
            .flat_map(|blk| {
                let d = f16(blk);
                let qs = &blk[2..];
                let lo = qs.iter().map(|&q| (q & 0x0F) as i8 - 8);
                let hi = qs.iter().map(|&q| (q >> 4) as i8 - 8);
                lo.chain(hi).map(move |q| d * q as f32)
            })
            .collect(),
        GgmlType::Q4_1 => b
            .chunks_exact(20)
            .flat_map(|blk| {
                let (d, m) = (f16(blk), f16(&blk[2..]));
                let qs = &blk[4..];
                let lo = qs.iter().map(|&q| q & 0x0F);
                let hi = qs.iter().map(|&q| q >> 4);
                lo.chain(hi).map(move |q| d * q as f32 + m)
            })
            .collect(),
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (size, min) = if kind == GgmlType::Q5_0 {
                (22, false)
            } else {
                (24, true)
            };
            let mut out = Vec::with_capacity(b.len() / size * 32);
            for blk in b.chunks_exact(size) {
                let d = f16(blk);
                let (m, rest) = if min {
                    (f16(&blk[2..]), &blk[4..])
                } else {
                    (0.0, &blk[2..])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..];
                for i in 0..32 {
                    let lo = (qs[i % 16] >> (4 * (i / 16))) & 0x0F;
                    let q = lo | (((qh >> i) & 1) as u8) << 4;
                    out.push(if min {
                        d * q as f32 + m
                    } else {
                        d * (q as i8 - 16) as f32
                    });
                }
            }
            out
        }
        GgmlType::Q2K => super_blocks(b, 84, |blk, out| {
            let (scales, qs) = (&blk[..16], &blk[16..80]);
            let (d, dmin) = (f16(&blk[80..]), f16(&blk[82..]));
            for (i, y) in out.iter_mut().enumerate() {
                let sc = scales[i / 16];
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                let q = two_bits(qs, i);
                *y = dl * q as f32 - ml;
            }
        }),
        GgmlType::Q3K => super_blocks(b, 110, |blk, out| {
            let (hmask, qs, sc) = (&blk[..32], &blk[32..96], &blk[96..108]);
            let d = f16(&blk[108..]);
            for (i, y) in out.iter_mut().enumerate() {
                let j = i / 16;
                let lo = if j < 8 { sc[j] & 0x0F } else { sc[j - 8] >> 4 };
                let hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
                let scale = ((lo | hi << 4) as i8 - 32) as f32;
                // The high bit is stored inverted: a set bit means no offset of -4.
                let high = ((hmask[i % 32] >> (i / 32)) & 1) ^ 1;
                let q = two_bits(qs, i) as i8 - ((high << 2) as i8);
                *y = d * scale * q as f32;
            }
        }),
        GgmlType::Q4K | GgmlType::Q5K => {
            let size = if kind == GgmlType::Q4K { 144 } else { 176 };
            super_blocks(b, size, |blk, out| {
                let (d, dmin) = (f16(blk), f16(&blk[2..]));
                let (sc, mins) = scale_min_k4(&blk[4..16]);
                let (qh, qs) = if size == 144 {
                    (None, &blk[16..])
                } else {
                    (Some(&blk[16..48]), &blk[48..])
                };
                for (i, y) in out.iter_mut().enumerate() {
                    let j = i / 32;
                    let mut q = (qs[(i / 64) * 32 + i % 32] >> (4 * ((i % 64) / 32))) & 0x0F;
                    if let Some(qh) = qh {
                        q |= ((qh[i % 32] >> j) & 1) << 4;
                    }
                    *y = d * sc[j] as f32 * q as f32 - dmin * mins[j] as f32;
                }
            })
        }
        GgmlType::Q6K => super_blocks(b, 210, |blk, out| {
            let (ql, qh, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
            let d = f16(&blk[208..]);
            for (i, y) in out.iter_mut().enumerate() {
                let (h, r) = (i / 128, i % 128);
                let lo = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
                let hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
                let q = (lo | hi << 4) as i8 - 32;
                *y = d * scales[i / 16] as i8 as f32 * q as f32;
            }
        }),
        GgmlType::Q8K => super_blocks(b, 292, |blk, out| {
            let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            for (y, &q) in out.iter_mut().zip(&blk[4..260]) {
                *y = d * q as i8 as f32;
            }
        }),
        GgmlType::Other(_) => Vec::new(),
    }
}

/// Dequantises super-blocks of 256 values of `size` bytes each with `one`.
fn super_blocks(b: &[u8], size: usize, one: impl Fn(&[u8], &mut [f32])) -> Vec<f32> {
    let mut out = vec![0f32; b.len() / size * QK_K as usize];
    for (blk, y) in b
        .chunks_exact(size)
        .zip(out.chunks_exact_mut(QK_K as usize))
    {
        one(blk, y);
    }
    out
}

/// Value `i` of a super-block's 2-bit quants (Q2_K, Q3_K's low bits): 64 bytes as two halves of
/// 32, each byte holding one value of each of four consecutive 32-value groups.
fn two_bits(qs: &[u8], i: usize) -> u8 {
    let (half, r) = (i / 128, i % 128);
    (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3
}

/// The eight 6-bit scales and minimums of a Q4_K/Q5_K super-block, packed into 12 bytes
/// (ggml's `get_scale_min_k4`).
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }

    #[test]
    fn a_tensor_past_the_end_of_a_truncated_file_is_refused() {
        // One empty F32 tensor; the data would start after padding the file does not have.
        let mut b = header(1, 0);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'e');
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let e = Gguf::parse(b, "m.gguf").unwrap_err().to_string();
        assert!(
            e.contains("tensor `e` needs bytes 64..64 of the file but it has 57"),
            "{e}"
        );
    }

    #[test]
    fn counts_and_shapes_are_checked_against_the_file_before_allocating() {
        let e = Gguf::parse(header(0, 1 << 60), "m.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.gguf: not a valid GGUF file: the metadata count is"),
            "{e}"
        );
        let e = Gguf::parse(header(1 << 40, 0), "m.gguf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the tensor count is 1099511627776"), "{e}");
        // One tensor claiming 2^40 elements in a file of a few bytes.
        let mut b = header(1, 0);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'w');
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 20).to_le_bytes());
        b.extend_from_slice(&(1u64 << 20).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let e = Gguf::parse(b, "m.gguf").unwrap_err().to_string();
        assert!(
            e.contains("tensor `w` has shape [1048576, 1048576], larger than the file"),
            "{e}"
        );
        let e = Gguf::parse(b"GGUF\x01\0\0\0".to_vec(), "m.gguf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 1 (2 and 3 are read)"), "{e}");
    }
}
