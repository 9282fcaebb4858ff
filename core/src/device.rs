//! Choosing the device once, with the reason shown to the user.

use burn::tensor::Device;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The pure-Rust CPU backend (burn `flex`).
    Cpu,
    /// wgpu (Vulkan / Metal / DX12 natively, WebGPU in the browser).
    Gpu,
    /// wgpu when a real adapter exists, else the CPU.
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
            other => Err(format!(
                "unknown device `{other}` (expected cpu, gpu or auto)"
            )),
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
/// rasteriser (lavapipe, SwiftShader) is far slower than flex for these models.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub fn choose(choice: DeviceChoice) -> ChosenDevice {
    match choice {
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
        DeviceChoice::Gpu => ChosenDevice {
            reason: "cpu (flex): this build has no wgpu support".into(),
            ..cpu()
        },
        DeviceChoice::Auto => match real_gpu_adapter() {
            Some(name) => ChosenDevice {
                device: gpu_device(),
                reason: format!("gpu (wgpu, {name}): a hardware adapter was found"),
            },
            None => ChosenDevice {
                reason: "cpu (flex): no hardware GPU adapter was found".into(),
                ..cpu()
            },
        },
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
/// default adapter), `gpu:N` (the N-th discrete GPU), `igpu:N` (the N-th integrated GPU).
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
        _ => Err(format!(
            "unknown device `{s}` (expected cpu, gpu, gpu:N or igpu:N)"
        )),
    }
}
