//! Device selection: CPU by default, CUDA when the `cuda` feature is compiled in and asked for.

use crate::{Error, Result};
use candle_core::Device;
use std::str::FromStr;

/// Which device to run on, as written in configs and on the command line
/// (`"cpu"`, `"cuda"`, `"cuda:1"`, `"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// The CPU (default; always available, deterministic per seed).
    #[default]
    Cpu,
    /// CUDA device with the given ordinal.
    Cuda(usize),
    /// CUDA device 0 if compiled in and present, else the CPU.
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "auto" => Ok(DeviceChoice::Auto),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                if let Some(n) = t.strip_prefix("cuda:") {
                    n.parse::<usize>()
                        .map(DeviceChoice::Cuda)
                        .map_err(|_| Error::invalid("device", s, "cpu, auto, cuda, cuda:<ordinal>"))
                } else {
                    Err(Error::invalid("device", s, "cpu, auto, cuda, cuda:<ordinal>"))
                }
            }
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        match d {
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Auto => "auto".into(),
            DeviceChoice::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// Whether this build has CUDA support compiled in (the `cuda` feature).
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

impl DeviceChoice {
    /// Open the device. Asking for CUDA in a build without the `cuda` feature is an error,
    /// not a silent fallback; `Auto` falls back to the CPU.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                if !cuda_compiled() {
                    return Err(Error::FeatureDisabled { what: format!("device cuda:{i}"), feature: "cuda".into() });
                }
                Ok(Device::new_cuda(i)?)
            }
            // `cuda_is_available()` only says the feature is compiled in; whether a device is
            // there shows when it is opened (a CUDA build on a machine without a GPU: CPU).
            DeviceChoice::Auto => {
                Ok(if cuda_compiled() { Device::new_cuda(0).unwrap_or(Device::Cpu) } else { Device::Cpu })
            }
        }
    }
}

/// The default device: the CPU.
pub fn default_device() -> Device {
    Device::Cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for (s, d) in [
            ("cpu", DeviceChoice::Cpu),
            ("CUDA", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
            ("auto", DeviceChoice::Auto),
        ] {
            let p: DeviceChoice = s.parse().unwrap();
            assert_eq!(p, d);
            let back: DeviceChoice = String::from(p).parse().unwrap();
            assert_eq!(back, d);
        }
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("cuda:<ordinal>"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_is_default_and_cuda_needs_feature() {
        assert!(DeviceChoice::default().open().unwrap().is_cpu());
        assert!(DeviceChoice::Auto.open().is_ok());
        if !cuda_compiled() {
            let e = DeviceChoice::Cuda(0).open().unwrap_err();
            assert!(matches!(e, Error::FeatureDisabled { .. }), "{e}");
        }
    }

    #[test]
    fn deserialises_from_json() {
        let d: DeviceChoice = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(d, DeviceChoice::Cuda(1));
        assert!(serde_json::from_str::<DeviceChoice>("\"npu\"").is_err());
    }
}
