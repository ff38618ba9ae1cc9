//! Named variants of one base [`EmulatorConfig`]: each variant is a partial JSON object
//! deep-merged into the base ([`gradlab_core::experiment::merge`]) and then typed, so a key
//! that `EmulatorConfig` does not have is refused by name.

use super::emulator_model::EmulatorConfig;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// One variant: a name and the settings it changes in the base configuration.
///
/// ```
/// use gradlab_aerosol::emulator::{EmulatorConfig, HeadKind, Variant};
///
/// let base = EmulatorConfig { huber_delta: 1.0, ..EmulatorConfig::default() };
/// let v: Variant = serde_json::from_value(serde_json::json!({"name": "completion", "head": "completion"}))?;
/// let cfg = v.config(&base)?;
/// assert_eq!((cfg.head, cfg.huber_delta), (HeadKind::Completion, 1.0));
/// let typo: Variant = serde_json::from_value(serde_json::json!({"name": "x", "heads": "completion"}))?;
/// assert!(typo.config(&base).unwrap_err().to_string().contains("heads"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Name in tables, file names and the metrics.
    pub name: String,
    /// Fields of [`EmulatorConfig`] this variant sets (a partial object; nested objects such as
    /// `penalties` merge key by key).
    #[serde(flatten)]
    pub overrides: serde_json::Map<String, serde_json::Value>,
}

impl Variant {
    /// The base configuration with this variant's settings merged in.
    pub fn config(&self, base: &EmulatorConfig) -> Result<EmulatorConfig> {
        let mut v = serde_json::to_value(base).map_err(|e| gradlab_core::Error::external("emulator config", e))?;
        gradlab_core::experiment::merge(&mut v, &serde_json::Value::Object(self.overrides.clone()));
        let cfg: EmulatorConfig = gradlab_core::experiment::from_value(&v, &format!("variant `{}`", self.name))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The configurations of all `variants` (all typed and checked before any is trained); at least
/// one variant, names unique.
pub fn variant_configs(base: &EmulatorConfig, variants: &[Variant]) -> Result<Vec<EmulatorConfig>> {
    if variants.is_empty() {
        return Err(crate::Error::invalid("variants", "[]", "at least one variant"));
    }
    for (i, v) in variants.iter().enumerate() {
        // The name becomes a folder (`checkpoints/<name>`, `models/<name>`) and a file prefix.
        let plain = !v.name.is_empty()
            && !v.name.starts_with('.')
            && v.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !plain {
            return Err(crate::Error::invalid(
                "variants.name",
                &v.name,
                "letters, digits and -_. (not empty, not starting with .), as it names folders and files",
            ));
        }
        if variants[..i].iter().any(|w| w.name == v.name) {
            return Err(crate::Error::invalid("variants.name", &v.name, "names unique across the variants"));
        }
    }
    variants.iter().map(|v| v.config(base)).collect()
}
