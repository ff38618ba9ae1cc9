//! Detector geometry and materials as data.
//!
//! A detector is a set of named materials, passive volumes at fixed z and *stacks* of identical
//! layer modules (the Bergen DTC has a tracker stack of 2 and a calorimeter stack of 41). Every
//! module holds exactly one sensitive slab; sensitive layers are numbered 0, 1, … in z order.
//! Volumes are infinite in x and y (the pixel grid decides what is seen); gaps are filled with
//! the world material.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::physics::{ClusterModel, Material, RangeTable};

/// One slab of a layer module, in module order (upstream first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSlab {
    /// Material name (a key of [`DetectorConfig::materials`]).
    pub material: String,
    /// Thickness [µm].
    pub thickness_um: f64,
    /// Whether this slab is the sensitive (epitaxial) layer; exactly one per module.
    #[serde(default)]
    pub sensitive: bool,
}

/// A stack of identical modules at a constant pitch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerStack {
    /// Name, e.g. `tracker` or `calorimeter`.
    pub name: String,
    /// Number of modules.
    pub count: usize,
    /// z of the upstream face of the first module [mm].
    pub first_z_mm: f64,
    /// Module-to-module distance [mm].
    pub pitch_mm: f64,
    /// The slabs of one module.
    pub module: Vec<ModuleSlab>,
}

/// A passive volume at a fixed position (entrance windows, covers, supports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveVolume {
    /// Name for error messages.
    pub name: String,
    /// Material name.
    pub material: String,
    /// z of the upstream face [mm].
    pub z_mm: f64,
    /// Thickness [mm].
    pub thickness_mm: f64,
}

/// The pixel grid of every sensitive layer: `nx` × `ny` pixels over ±`half_x_mm` × ±`half_y_mm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelGrid {
    /// Pixels along x (9 · 1024).
    pub nx: u32,
    /// Pixels along y (12 · 512).
    pub ny: u32,
    /// Half width along x [mm] (135.4).
    pub half_x_mm: f64,
    /// Half height along y [mm] (83.15).
    pub half_y_mm: f64,
}

impl PixelGrid {
    /// Pixel pitch (x, y) [mm].
    pub fn pitch(&self) -> (f64, f64) {
        (2.0 * self.half_x_mm / self.nx as f64, 2.0 * self.half_y_mm / self.ny as f64)
    }

    /// Snap a position to the centre of its pixel; `None` outside the sensor.
    #[inline]
    pub fn digitise(&self, x: f64, y: f64) -> Option<(u32, u32, f64, f64)> {
        let (px, py) = self.pitch();
        let fx = (x + self.half_x_mm) / px;
        let fy = (y + self.half_y_mm) / py;
        if !(fx >= 0.0 && fy >= 0.0 && fx < self.nx as f64 && fy < self.ny as f64) {
            return None;
        }
        let ix = fx as u32;
        let iy = fy as u32;
        Some((ix, iy, -self.half_x_mm + (ix as f64 + 0.5) * px, -self.half_y_mm + (iy as f64 + 0.5) * py))
    }
}

/// The detector description as stored in `configs/detector-*.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Name of the detector.
    pub name: String,
    /// Free-text notes (sources, unconfirmed choices).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Material filling every gap.
    #[serde(default = "default_world")]
    pub world_material: String,
    /// Materials by name.
    pub materials: BTreeMap<String, Material>,
    /// Passive volumes.
    #[serde(default)]
    pub passive: Vec<PassiveVolume>,
    /// Layer stacks; their sensitive layers are numbered in z order.
    pub stacks: Vec<LayerStack>,
    /// Pixel grid of the sensors.
    pub pixels: PixelGrid,
    /// Cluster-size model of the sensors.
    #[serde(default)]
    pub cluster_model: ClusterModel,
}

fn default_world() -> String {
    "air".to_string()
}

impl DetectorConfig {
    /// Read and validate a detector JSON file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let cfg: DetectorConfig = gradlab_core::io::read_json(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The Bergen DTC shipped with the crate (`configs/detector-bergen-dtc.json`, embedded).
    pub fn bergen_dtc() -> Self {
        let cfg: DetectorConfig = serde_json::from_str(include_str!("../../../configs/detector-bergen-dtc.json"))
            .expect("embedded detector config parses");
        cfg.validate().expect("embedded detector config is valid");
        cfg
    }

    /// Check every value; returns the first problem found.
    pub fn validate(&self) -> Result<()> {
        let known: Vec<String> = self.materials.keys().cloned().collect();
        let need = |name: &str, used_in: String| -> Result<()> {
            if self.materials.contains_key(name) {
                Ok(())
            } else {
                Err(Error::UnknownMaterial { name: name.to_string(), used_in, known: known.clone() })
            }
        };
        for (name, m) in &self.materials {
            m.validate(name)?;
        }
        need(&self.world_material, "world_material".into())?;
        for (i, p) in self.passive.iter().enumerate() {
            need(&p.material, format!("passive[{i}] ({})", p.name))?;
            if !(p.thickness_mm.is_finite() && p.thickness_mm > 0.0) {
                return Err(Error::invalid(format!("passive[{i}].thickness_mm"), p.thickness_mm, "> 0"));
            }
            if !p.z_mm.is_finite() {
                return Err(Error::invalid(format!("passive[{i}].z_mm"), p.z_mm, "a finite z"));
            }
        }
        if self.stacks.is_empty() {
            return Err(Error::invalid("stacks", "[]", "at least one layer stack"));
        }
        for (s, st) in self.stacks.iter().enumerate() {
            if st.count == 0 {
                return Err(Error::invalid(format!("stacks[{s}].count"), st.count, ">= 1"));
            }
            if !st.first_z_mm.is_finite() {
                return Err(Error::invalid(format!("stacks[{s}].first_z_mm"), st.first_z_mm, "a finite z"));
            }
            let n_sens = st.module.iter().filter(|m| m.sensitive).count();
            if n_sens != 1 {
                return Err(Error::invalid(
                    format!("stacks[{s}].module"),
                    format!("{n_sens} sensitive slabs"),
                    "exactly one slab with \"sensitive\": true",
                ));
            }
            let mut thick = 0.0;
            for (k, m) in st.module.iter().enumerate() {
                need(&m.material, format!("stacks[{s}].module[{k}]"))?;
                if !(m.thickness_um.is_finite() && m.thickness_um > 0.0) {
                    return Err(Error::invalid(
                        format!("stacks[{s}].module[{k}].thickness_um"),
                        m.thickness_um,
                        "> 0 µm",
                    ));
                }
                thick += m.thickness_um * 1e-3;
            }
            if st.count > 1 && !(st.pitch_mm.is_finite() && st.pitch_mm >= thick) {
                return Err(Error::invalid(
                    format!("stacks[{s}].pitch_mm"),
                    st.pitch_mm,
                    format!("at least the module thickness {thick:.4} mm"),
                ));
            }
        }
        let g = &self.pixels;
        if g.nx == 0 || g.ny == 0 {
            return Err(Error::invalid("pixels.nx/ny", format!("{}x{}", g.nx, g.ny), ">= 1 pixel each"));
        }
        for (f, v) in [("pixels.half_x_mm", g.half_x_mm), ("pixels.half_y_mm", g.half_y_mm)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(f, v, "> 0 mm"));
            }
        }
        self.cluster_model.validate()?;
        // Overlaps are checked by building the slab list.
        Detector::build(self).map(|_| ())
    }
}

/// A slab of homogeneous material between `z0` and `z1` [mm].
#[derive(Debug, Clone, PartialEq)]
pub struct Slab {
    /// Upstream face [mm].
    pub z0: f64,
    /// Downstream face [mm].
    pub z1: f64,
    /// Index into [`Detector::materials`].
    pub material: usize,
    /// Sensitive layer index, if this slab is sensitive.
    pub layer: Option<u16>,
    /// Name of the volume (for diagnostics).
    pub name: String,
}

/// A built, validated detector: contiguous slabs, materials with range tables, layer positions.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The configuration it was built from.
    pub config: DetectorConfig,
    /// Material names, indexed like [`materials`](Self::materials).
    pub material_names: Vec<String>,
    /// Materials.
    pub materials: Vec<Material>,
    /// CSDA range tables, one per material.
    pub tables: Vec<RangeTable>,
    /// Non-world volumes in z order (gaps are world material).
    pub slabs: Vec<Slab>,
    /// z of the centre of each sensitive layer [mm].
    pub layer_z: Vec<f64>,
    /// Stack index of each sensitive layer.
    pub layer_stack: Vec<usize>,
    /// Index of the world material.
    pub world: usize,
}

impl Detector {
    /// Build from a configuration (validating it).
    pub fn new(config: &DetectorConfig) -> Result<Self> {
        config.validate()?;
        Self::build(config)
    }

    fn build(config: &DetectorConfig) -> Result<Self> {
        let material_names: Vec<String> = config.materials.keys().cloned().collect();
        let materials: Vec<Material> = config.materials.values().cloned().collect();
        let idx = |n: &str| material_names.iter().position(|m| m == n).expect("validated");
        let mut slabs = Vec::new();
        for p in &config.passive {
            slabs.push((
                Slab {
                    z0: p.z_mm,
                    z1: p.z_mm + p.thickness_mm,
                    material: idx(&p.material),
                    layer: None,
                    name: p.name.clone(),
                },
                usize::MAX,
            ));
        }
        for (s, st) in config.stacks.iter().enumerate() {
            for k in 0..st.count {
                let mut z = st.first_z_mm + k as f64 * st.pitch_mm;
                for (j, m) in st.module.iter().enumerate() {
                    let t = m.thickness_um * 1e-3;
                    slabs.push((
                        Slab {
                            z0: z,
                            z1: z + t,
                            material: idx(&m.material),
                            layer: None,
                            name: format!("{}[{k}].module[{j}]", st.name),
                        },
                        if m.sensitive { s } else { usize::MAX },
                    ));
                    z += t;
                }
            }
        }
        slabs.sort_by(|a, b| a.0.z0.total_cmp(&b.0.z0));
        for w in slabs.windows(2) {
            if w[0].0.z1 > w[1].0.z0 + 1e-9 {
                return Err(Error::Overlap {
                    first: w[0].0.name.clone(),
                    first_end_mm: w[0].0.z1,
                    second: w[1].0.name.clone(),
                    second_start_mm: w[1].0.z0,
                });
            }
        }
        let mut layer_z = Vec::new();
        let mut layer_stack = Vec::new();
        let mut out = Vec::with_capacity(slabs.len());
        for (mut slab, stack) in slabs {
            if stack != usize::MAX {
                if layer_z.len() >= u16::MAX as usize {
                    return Err(Error::invalid("stacks", layer_z.len(), "fewer than 65535 sensitive layers"));
                }
                slab.layer = Some(layer_z.len() as u16);
                layer_z.push(0.5 * (slab.z0 + slab.z1));
                layer_stack.push(stack);
            }
            out.push(slab);
        }
        let tables = materials.iter().map(RangeTable::new).collect();
        Ok(Detector {
            config: config.clone(),
            world: idx(&config.world_material),
            material_names,
            materials,
            tables,
            slabs: out,
            layer_z,
            layer_stack,
        })
    }

    /// Number of sensitive layers.
    pub fn num_layers(&self) -> usize {
        self.layer_z.len()
    }

    /// Index of a material by name.
    pub fn material_index(&self, name: &str) -> Result<usize> {
        self.material_names.iter().position(|m| m == name).ok_or_else(|| Error::UnknownMaterial {
            name: name.to_string(),
            used_in: "lookup".into(),
            known: self.material_names.clone(),
        })
    }

    /// Upstream face of the first volume [mm].
    pub fn front_z(&self) -> f64 {
        self.slabs.first().map(|s| s.z0).unwrap_or(0.0)
    }

    /// Downstream face of the last volume [mm].
    pub fn back_z(&self) -> f64 {
        self.slabs.last().map(|s| s.z1).unwrap_or(0.0)
    }

    /// Water-equivalent thickness [mm] from the detector front to the centre of each sensitive
    /// layer, for a proton entering at `energy_mev` along the axis (world gaps included).
    ///
    /// WET of a path = R_water(E_in) − R_water(E_out), with CSDA energy loss.
    pub fn layer_wet_mm(&self, energy_mev: f64) -> Vec<f64> {
        let water = RangeTable::new(&Material::water());
        let r0 = water.range_mm(energy_mev);
        let mut e = energy_mev;
        let mut z = self.front_z();
        let mut out = Vec::with_capacity(self.num_layers());
        let advance = |mat: usize, len: f64, e: &mut f64| {
            if len > 0.0 {
                *e = self.tables[mat].energy_after_mm(*e, len);
            }
        };
        for s in &self.slabs {
            advance(self.world, s.z0 - z, &mut e);
            if s.layer.is_some() {
                let half = 0.5 * (s.z1 - s.z0);
                advance(s.material, half, &mut e);
                out.push(r0 - water.range_mm(e));
                advance(s.material, half, &mut e);
            } else {
                advance(s.material, s.z1 - s.z0, &mut e);
            }
            z = s.z1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bergen_geometry_matches_paper_layout() {
        let d = Detector::new(&DetectorConfig::bergen_dtc()).unwrap();
        assert_eq!(d.num_layers(), 43);
        // 2 tracker layers 57.8 mm apart, calorimeter pitch 5.5 mm.
        assert!((d.layer_z[1] - d.layer_z[0] - 57.8).abs() < 1e-9);
        for l in 3..43 {
            assert!((d.layer_z[l] - d.layer_z[l - 1] - 5.5).abs() < 1e-9);
        }
        let (px, py) = d.config.pixels.pitch();
        assert!((px - 0.029_383).abs() < 1e-5 && (py - 0.027_067).abs() < 1e-5, "{px} {py}");
    }

    #[test]
    fn bergen_water_equivalent_thickness_matches_the_published_design() {
        // The Bergen DTC design (Alme et al. 2020, as used by Kortus et al. 2025): layers 0, 1, 2
        // at 6, 7.8, 12.06 mm WET; +8.1–8.2 per calorimeter layer; layer 41 at ≈ 330.6 mm WET.
        let d = Detector::new(&DetectorConfig::bergen_dtc()).unwrap();
        // WET depends weakly on energy; 250 MeV reaches every layer.
        let wet = d.layer_wet_mm(250.0);
        for (l, target, tol) in [(0, 6.0, 0.3), (1, 7.8, 0.3), (2, 12.06, 0.3), (41, 330.6, 3.3)] {
            assert!((wet[l] - target).abs() < tol, "layer {l}: WET {} vs {target}", wet[l]);
        }
        for l in 3..42 {
            let step = wet[l] - wet[l - 1];
            assert!((7.9..8.45).contains(&step), "layer {l}: step {step}");
        }
    }

    #[test]
    fn invalid_configs_are_rejected_with_field_names() {
        let base = DetectorConfig::bergen_dtc();
        let mut c = base.clone();
        c.stacks[1].pitch_mm = 0.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("stacks[1].pitch_mm"), "{e}");
        let mut c = base.clone();
        c.stacks[0].module[0].material = "unobtainium".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("unobtainium") && e.contains("stacks[0].module[0]"), "{e}");
        let mut c = base.clone();
        c.stacks[0].module.iter_mut().for_each(|m| m.sensitive = false);
        assert!(c.validate().unwrap_err().to_string().contains("exactly one"));
        let mut c = base.clone();
        c.stacks[1].first_z_mm = c.stacks[0].first_z_mm + 57.9;
        assert!(matches!(c.validate().unwrap_err(), Error::Overlap { .. }));
        let mut c = base;
        c.materials.get_mut("water").unwrap().density_g_cm3 = -1.0;
        assert!(c.validate().unwrap_err().to_string().contains("materials.water.density_g_cm3"));
        // Unknown fields are refused by serde.
        let text =
            r#"{"name":"x","materials":{},"stacks":[],"pixels":{"nx":1,"ny":1,"half_x_mm":1,"half_y_mm":1},"bogus":1}"#;
        assert!(serde_json::from_str::<DetectorConfig>(text).is_err());
    }

    #[test]
    fn digitisation_snaps_to_pixel_centres() {
        let g = PixelGrid { nx: 10, ny: 4, half_x_mm: 5.0, half_y_mm: 2.0 };
        assert_eq!(g.digitise(0.2, -1.9), Some((5, 0, 0.5, -1.5)));
        assert_eq!(g.digitise(-5.0, 1.99), Some((0, 3, -4.5, 1.5)));
        assert_eq!(g.digitise(5.0, 0.0), None);
        assert_eq!(g.digitise(f64::NAN, 0.0), None);
    }
}
