//! Choosing the device once, with the reason shown to the user.

use burn::tensor::Device;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The pure-Rust CPU backend (burn `flex`).
    Cpu,
    /// wgpu (Vulkan / Metal / DX12 natively, WebGPU in the browser).
    Gpu,
    /// burn's CUDA backend on the N-th NVIDIA GPU (`cuda`, `cuda:N`); needs a build with the
    /// `cuda` feature, the NVIDIA driver and NVRTC (`libnvrtc`) at run time.
    Cuda(usize),
    /// CUDA when this build has it and the driver and NVRTC load and see a GPU, else wgpu when
    /// a hardware adapter exists, else the CPU.
    #[default]
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(i) => i
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| format!("device `{other}`: `{i}` is not a device number")),
                None => Err(format!(
                    "unknown device `{other}` (expected cpu, gpu, cuda, cuda:N or auto)"
                )),
            },
        }
    }
}

/// A chosen device and why it was chosen.
#[derive(Debug, Clone)]
pub struct ChosenDevice {
    /// The burn device.
    pub device: Device,
    /// One line for the user, e.g. "cpu (flex): --device cpu".
    pub reason: String,
}

/// The CPU device (burn `flex`).
#[cfg(feature = "flex")]
pub fn cpu() -> ChosenDevice {
    ChosenDevice {
        device: Device::flex(),
        reason: "cpu (flex)".into(),
    }
}

/// Picks the device natively. `Auto` uses wgpu only when the adapter is real hardware: a software
/// rasteriser (lavapipe, SwiftShader) is far slower than flex for these models. An explicit
/// `cuda` that cannot run here is an error (saying what is missing), not a quiet fall-back.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub fn choose(choice: DeviceChoice) -> Result<ChosenDevice, String> {
    Ok(match choice {
        DeviceChoice::Cpu => ChosenDevice {
            reason: "cpu (flex): --device cpu".into(),
            ..cpu()
        },
        #[cfg(feature = "wgpu")]
        DeviceChoice::Gpu => ChosenDevice {
            device: Device::wgpu(Default::default()),
            reason: "gpu (wgpu): --device gpu".into(),
        },
        #[cfg(not(feature = "wgpu"))]
        DeviceChoice::Gpu => return Err(no_wgpu("--device gpu")),
        DeviceChoice::Cuda(i) => cuda_device(i, &format!("--device cuda:{i}"), cuda_probe())?,
        DeviceChoice::Auto => {
            let cuda = cuda_probe();
            if cuda.is_ok() {
                return cuda_device(0, "a CUDA GPU was found", cuda);
            }
            let why_not_cuda = cuda.err().unwrap_or_default();
            match real_gpu_adapter() {
                Some(name) => ChosenDevice {
                    device: gpu_device(),
                    reason: format!(
                        "gpu (wgpu, {name}): a hardware adapter was found; not cuda: {why_not_cuda}"
                    ),
                },
                None => ChosenDevice {
                    reason: format!(
                        "cpu (flex): {}; not cuda: {why_not_cuda}",
                        if cfg!(feature = "wgpu") {
                            "no hardware GPU adapter was found"
                        } else {
                            "this build has no wgpu support"
                        }
                    ),
                    ..cpu()
                },
            }
        }
    })
}

/// The CUDA device `index`, or why it cannot run here (a build without the `cuda` feature, no
/// driver, no NVRTC, no such GPU): checked before burn would panic on first use.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
fn cuda_device(
    index: usize,
    why: &str,
    probed: Result<String, String>,
) -> Result<ChosenDevice, String> {
    let name = probed.map_err(|e| format!("--device cuda:{index}: {e}"))?;
    #[cfg(feature = "cuda")]
    {
        let count = cudarc::driver::CudaContext::device_count()
            .unwrap_or(0)
            .max(0) as usize;
        if index >= count {
            return Err(format!(
                "--device cuda:{index}: the driver sees {count} GPU(s), numbered from 0"
            ));
        }
        Ok(ChosenDevice {
            device: Device::cuda(index),
            reason: format!("cuda:{index} (burn cuda, {name}): {why}"),
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (name, why);
        unreachable!("cuda_probe succeeds only in a build with the cuda feature")
    }
}

/// Whether burn's CUDA backend can run here: the driver library loads, initialises and sees at
/// least one GPU, NVRTC (which compiles burn's kernels at run time) loads and the toolkit's
/// headers are where cubecl looks (`CUDA_PATH`, `/usr/local/cuda`, `/opt/cuda`). `Ok` holds the
/// first GPU's name; `Err` says what is missing. `NORMTUNE_GPU=off` turns it off as for wgpu.
#[cfg(not(target_arch = "wasm32"))]
pub fn cuda_probe() -> Result<String, String> {
    if std::env::var("NORMTUNE_GPU").is_ok_and(|v| v == "off") {
        return Err("NORMTUNE_GPU=off".into());
    }
    #[cfg(feature = "cuda")]
    {
        use cudarc::driver::CudaContext;
        // SAFETY: `is_culib_present` only tries to dlopen the library's usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("the NVIDIA driver library (libcuda.so) was not found".into());
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(
                "NVRTC (libnvrtc.so, CUDA's run-time compiler) was not found; add the CUDA \
                 toolkit's lib64 folder to LD_LIBRARY_PATH"
                    .into(),
            );
        }
        // burn's kernels are compiled by NVRTC with the toolkit's headers; cubecl-cuda looks
        // for them as here (`cubecl_cuda::install::cuda_path`) and panics when they are absent.
        let toolkit = std::env::var_os("CUDA_PATH")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                ["/usr/local/cuda", "/opt/cuda"]
                    .into_iter()
                    .map(std::path::PathBuf::from)
                    .find(|p| p.exists())
            })
            .or_else(|| {
                std::path::Path::new("/usr/bin/nvcc")
                    .exists()
                    .then(|| "/usr".into())
            });
        match toolkit {
            Some(dir) if dir.join("include").join("cuda.h").exists() => {}
            Some(dir) => {
                return Err(format!(
                    "the CUDA toolkit's headers are not in {}/include (set CUDA_PATH to the \
                     toolkit's folder)",
                    dir.display()
                ));
            }
            None => {
                return Err(
                    "the CUDA toolkit (its headers, which burn's kernels include) was \
                            not found; set CUDA_PATH to the toolkit's folder"
                        .into(),
                );
            }
        }
        match CudaContext::device_count() {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err("the NVIDIA driver sees no GPU".into()),
            Err(e) => return Err(format!("the NVIDIA driver did not start ({e})")),
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("GPU 0 did not open ({e})"))?;
        Ok(ctx.name().unwrap_or_else(|_| "NVIDIA GPU".into()))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this build has no CUDA support (build with `--features cuda`)".into())
    }
}

#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
fn gpu_device() -> Device {
    Device::wgpu(Default::default())
}
#[cfg(all(not(feature = "wgpu"), not(target_arch = "wasm32"), feature = "flex"))]
fn gpu_device() -> Device {
    Device::flex()
}

/// The name of a hardware GPU adapter, if the environment variable `NORMTUNE_GPU` does not say
/// `off` and the system has one. Software adapters do not count.
#[cfg(not(target_arch = "wasm32"))]
fn real_gpu_adapter() -> Option<String> {
    if std::env::var("NORMTUNE_GPU").is_ok_and(|v| v == "off") {
        return None;
    }
    #[cfg(feature = "wgpu")]
    {
        probe_adapter()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        None
    }
}

#[cfg(all(
    feature = "wgpu",
    not(target_arch = "wasm32"),
    not(target_os = "linux")
))]
fn probe_adapter() -> Option<String> {
    // macOS (Metal) and Windows (DX12/Vulkan) desktops have a hardware adapter.
    Some("system default adapter".into())
}

#[cfg(all(feature = "wgpu", target_os = "linux"))]
fn probe_adapter() -> Option<String> {
    // Reading /sys is cheaper and safer than creating a wgpu instance just to ask: a DRM render
    // node whose driver is not a software one means a hardware GPU.
    let dir = std::fs::read_dir("/sys/class/drm").ok()?;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("renderD") {
            continue;
        }
        let driver = std::fs::read_link(entry.path().join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().to_string()))
            .unwrap_or_default();
        if !driver.is_empty() && driver != "vgem" {
            return Some(driver);
        }
    }
    None
}

/// One device of a `devices` list (data-parallel training): `cpu` (burn flex), `gpu` (wgpu's
/// default adapter), `gpu:N` (the N-th discrete GPU), `igpu:N` (the N-th integrated GPU),
/// `cuda` / `cuda:N` (burn's CUDA backend; a build with the `cuda` feature).
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub fn parse_device(s: &str) -> Result<ChosenDevice, String> {
    let s = s.trim();
    let (kind, index) = match s.split_once(':') {
        Some((k, i)) => (
            k,
            Some(
                i.parse::<usize>()
                    .map_err(|_| format!("device `{s}`: `{i}` is not a device number"))?,
            ),
        ),
        None => (s, None),
    };
    match (kind, index) {
        ("cpu", None) => Ok(ChosenDevice {
            reason: "cpu (flex)".into(),
            ..cpu()
        }),
        #[cfg(feature = "wgpu")]
        ("gpu", None) => Ok(ChosenDevice {
            device: Device::wgpu(Default::default()),
            reason: "gpu (wgpu, default adapter)".into(),
        }),
        #[cfg(feature = "wgpu")]
        ("gpu", Some(i)) => Ok(ChosenDevice {
            device: Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)),
            reason: format!("gpu:{i} (wgpu, discrete GPU {i})"),
        }),
        #[cfg(feature = "wgpu")]
        ("igpu", Some(i)) => Ok(ChosenDevice {
            device: Device::wgpu(burn::tensor::DeviceKind::IntegratedGpu(i)),
            reason: format!("igpu:{i} (wgpu, integrated GPU {i})"),
        }),
        ("cuda", i) => {
            let i = i.unwrap_or(0);
            #[cfg(feature = "cuda")]
            {
                cuda_probe().map_err(|e| format!("device `{s}`: {e}"))?;
                Ok(ChosenDevice {
                    device: Device::cuda(i),
                    reason: format!("cuda:{i} (burn cuda)"),
                })
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(format!(
                    "device `{s}`: cuda:{i}: this build has no CUDA support (build with `--features cuda`)"
                ))
            }
        }
        #[cfg(not(feature = "wgpu"))]
        ("gpu", _) | ("igpu", Some(_)) => Err(no_wgpu(&format!("device `{s}`"))),
        _ => Err(format!(
            "unknown device `{s}` (expected cpu, gpu, gpu:N, igpu:N, cuda or cuda:N)"
        )),
    }
}

/// The error for an explicit GPU request (`what`) in a build without wgpu.
#[cfg(all(not(feature = "wgpu"), feature = "flex", not(target_arch = "wasm32")))]
fn no_wgpu(what: &str) -> String {
    format!(
        "{what}: this build has no wgpu support (it was built with `--no-default-features`; \
         build with the default features for GPUs)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_bad_ones_say_why() {
        assert_eq!("cpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("gpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Gpu));
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        let e = "cuda:x".parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("`x` is not a device number"), "{e}");
        let e = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("cuda:N"), "{e}");
    }

    /// burn's CUDA kernels are compiled as CUDA C++ by NVRTC. Upstream cubecl-cuda 0.11.3
    /// defaults to its LLVM backend, which needs LLVM downloaded at build time and aborted at the
    /// first kernel of a build without it (core/vendor/cubecl-cuda/NORMTUNE.md).
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_kernels_are_compiled_by_nvrtc() {
        use cubecl_cuda::compiler::{CudaBackend, CudaCompiler};
        assert_eq!(CudaBackend::default(), CudaBackend::Cpp);
        assert!(matches!(CudaCompiler::default(), CudaCompiler::Cpp(_)));
    }

    /// Without a CUDA driver (CI, this build without the feature), an explicit `cuda` is an
    /// error naming what is missing, and `auto` falls through to wgpu or the CPU with the reason.
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    #[test]
    fn cuda_where_it_cannot_run_is_an_error_and_auto_says_why_not() {
        let Err(why) = cuda_probe() else {
            return; // a machine with a working CUDA driver: nothing to check here
        };
        let e = choose(DeviceChoice::Cuda(1)).unwrap_err();
        assert!(
            e.starts_with("--device cuda:1: ") && e.ends_with(&why),
            "{e}"
        );
        let e = parse_device("cuda:2").unwrap_err();
        assert!(
            e.contains("cuda:2") && e.contains(&why[..why.len().min(20)]),
            "{e}"
        );
        let auto = choose(DeviceChoice::Auto).unwrap();
        assert!(
            auto.reason.contains(&format!("not cuda: {why}")),
            "{}",
            auto.reason
        );
    }
}
