//! Phantoms made of regions of materials: a homogeneous slab (the tracking papers' phantom), a
//! slab with a step, and a cylinder with cylindrical inserts (a CTP404-like sensitivity phantom).
//!
//! Coordinates: the beam runs along +z; x is horizontal and y vertical. A cylinder's axis is
//! parallel to y and passes through x = 0 at the centre of the phantom's z extent; a rotation by
//! θ about that axis (for pCT projections) turns the phantom, not the beam. Inserts are placed in
//! the phantom's own frame (u, w) = (x, z) at θ = 0.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the phantom inside its z extent `[z0, z0 + thickness]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PhantomShape {
    /// The whole extent is the phantom's material (the tracking papers' water slab).
    #[default]
    Slab,
    /// A slab with a step: for x ≥ `x_mm` only the downstream `step_thickness_mm` of the extent is
    /// material (the rest is the world material), for x < `x_mm` the whole extent.
    Step {
        /// Position of the step edge [mm].
        x_mm: f64,
        /// Thickness on the thin side [mm] (0 ≤ it ≤ the phantom's thickness).
        step_thickness_mm: f64,
    },
    /// A cylinder of the phantom's material with axis along y, with cylindrical inserts parallel
    /// to the axis; outside it, the world material.
    Cylinder {
        /// Radius [mm]; the phantom's thickness must be at least twice it.
        radius_mm: f64,
        /// Half height along y [mm] (the cylinder spans |y| ≤ it).
        #[serde(default = "default_half_height")]
        half_height_mm: f64,
        /// Inserts.
        #[serde(default)]
        inserts: Vec<Insert>,
        /// Rotation of the phantom about its axis [degrees] (a pCT projection angle).
        #[serde(default)]
        rotation_deg: f64,
    },
}

fn default_half_height() -> f64 {
    100.0
}

/// A cylindrical insert (axis along y) inside a cylinder phantom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insert {
    /// Material name (detector materials first, then [`crate::materials`]).
    pub material: String,
    /// Centre in the phantom frame along x at θ = 0 [mm].
    pub u_mm: f64,
    /// Centre in the phantom frame along z at θ = 0 (0 = the cylinder's axis) [mm].
    pub w_mm: f64,
    /// Radius [mm].
    pub radius_mm: f64,
    /// Half height along y [mm] (the insert spans |y| ≤ it; default: the cylinder's).
    #[serde(default)]
    pub half_height_mm: Option<f64>,
}

/// Materials of the CTP404-like sensitivity phantom's eight inserts, in angular order.
pub const CTP404_INSERTS: [&str; 8] =
    ["air", "pmma", "ldpe", "polystyrene", "teflon", "delrin", "cortical_bone", "adipose"];

impl PhantomShape {
    /// A CTP404-like sensitivity phantom: a water cylinder of radius 75 mm with eight inserts of
    /// radius 6.25 mm on a circle of radius 58.4 mm (the Catphan CTP404 module's layout; its
    /// inserts are air, PMP, LDPE, polystyrene, acrylic, Delrin, Teflon, air — here
    /// [`CTP404_INSERTS`], which adds bone and adipose tissue for a pCT user).
    pub fn ctp404() -> Self {
        let inserts = CTP404_INSERTS
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let a = std::f64::consts::TAU * k as f64 / 8.0;
                Insert {
                    material: (*m).into(),
                    u_mm: 58.4 * a.cos(),
                    w_mm: 58.4 * a.sin(),
                    radius_mm: 6.25,
                    half_height_mm: None,
                }
            })
            .collect();
        PhantomShape::Cylinder { radius_mm: 75.0, half_height_mm: 100.0, inserts, rotation_deg: 0.0 }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match self {
            PhantomShape::Slab => "slab".into(),
            PhantomShape::Step { x_mm, step_thickness_mm } => {
                format!("slab with a step at x = {x_mm} mm to {step_thickness_mm} mm")
            }
            PhantomShape::Cylinder { radius_mm, half_height_mm, inserts, rotation_deg } => {
                let ins: Vec<String> = inserts
                    .iter()
                    .map(|i| format!("{} r {} mm at ({:.1}, {:.1})", i.material, i.radius_mm, i.u_mm, i.w_mm))
                    .collect();
                format!(
                    "cylinder r {radius_mm} mm, |y| ≤ {half_height_mm} mm, rotated {rotation_deg}°, inserts (u, w) [mm]: {}",
                    if ins.is_empty() { "none".into() } else { ins.join("; ") }
                )
            }
        }
    }

    /// Every material name the shape uses besides the phantom's own.
    pub fn insert_materials(&self) -> Vec<&str> {
        match self {
            PhantomShape::Cylinder { inserts, .. } => inserts.iter().map(|i| i.material.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Check the shape against the phantom's thickness.
    pub fn validate(&self, thickness_mm: f64) -> Result<()> {
        let finite = |f: &str, v: f64, allowed: &str| -> Result<()> {
            if v.is_finite() { Ok(()) } else { Err(Error::invalid(format!("phantom.shape.{f}"), v, allowed)) }
        };
        match self {
            PhantomShape::Slab => Ok(()),
            PhantomShape::Step { x_mm, step_thickness_mm } => {
                finite("x_mm", *x_mm, "a finite position [mm]")?;
                if !(step_thickness_mm.is_finite() && (0.0..=thickness_mm).contains(step_thickness_mm)) {
                    return Err(Error::invalid(
                        "phantom.shape.step_thickness_mm",
                        step_thickness_mm,
                        format!("0 <= t <= phantom.thickness_mm ({thickness_mm})"),
                    ));
                }
                Ok(())
            }
            PhantomShape::Cylinder { radius_mm, half_height_mm, inserts, rotation_deg } => {
                if !(radius_mm.is_finite() && *radius_mm > 0.0 && 2.0 * radius_mm <= thickness_mm + 1e-9) {
                    return Err(Error::invalid(
                        "phantom.shape.radius_mm",
                        radius_mm,
                        format!("0 < r <= phantom.thickness_mm / 2 ({})", thickness_mm / 2.0),
                    ));
                }
                if !(half_height_mm.is_finite() && *half_height_mm > 0.0) {
                    return Err(Error::invalid("phantom.shape.half_height_mm", half_height_mm, "> 0 mm"));
                }
                finite("rotation_deg", *rotation_deg, "a finite angle [degrees]")?;
                for (k, ins) in inserts.iter().enumerate() {
                    let f = |n: &str| format!("phantom.shape.inserts[{k}].{n}");
                    if !(ins.radius_mm.is_finite() && ins.radius_mm > 0.0) {
                        return Err(Error::invalid(f("radius_mm"), ins.radius_mm, "> 0 mm"));
                    }
                    let d = ins.u_mm.hypot(ins.w_mm);
                    if !(d.is_finite() && d + ins.radius_mm <= *radius_mm + 1e-9) {
                        return Err(Error::invalid(
                            f("u_mm / w_mm"),
                            format!("({}, {}) with radius {}", ins.u_mm, ins.w_mm, ins.radius_mm),
                            format!("an insert inside the cylinder of radius {radius_mm} mm"),
                        ));
                    }
                    if let Some(h) = ins.half_height_mm
                        && !(h.is_finite() && h > 0.0)
                    {
                        return Err(Error::invalid(f("half_height_mm"), h, "> 0 mm"));
                    }
                }
                for (a, ia) in inserts.iter().enumerate() {
                    for (b, ib) in inserts.iter().enumerate().skip(a + 1) {
                        if (ia.u_mm - ib.u_mm).hypot(ia.w_mm - ib.w_mm) < ia.radius_mm + ib.radius_mm {
                            return Err(Error::invalid(
                                format!("phantom.shape.inserts[{a}] / inserts[{b}]"),
                                "overlapping inserts",
                                "inserts that do not overlap",
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// A shape with material names resolved to indices and its z extent fixed: answers "which
/// material is at (x, y, z)".
#[derive(Debug, Clone, PartialEq)]
pub enum Geometry {
    /// One material throughout.
    Uniform(usize),
    /// See [`PhantomShape::Step`].
    Step {
        /// Step edge [mm].
        x_mm: f64,
        /// z where the thin side's material begins [mm].
        thin_z0: f64,
        /// Phantom material.
        body: usize,
        /// World material.
        outside: usize,
    },
    /// See [`PhantomShape::Cylinder`].
    Cylinder {
        /// z of the axis [mm].
        centre_z: f64,
        /// Radius [mm].
        radius: f64,
        /// Half height [mm].
        half_height: f64,
        /// (cos θ, sin θ) of the rotation.
        rotation: (f64, f64),
        /// Phantom material.
        body: usize,
        /// World material.
        outside: usize,
        /// Inserts: (u, w, radius, half height, material).
        inserts: Vec<(f64, f64, f64, f64, usize)>,
    },
}

impl Geometry {
    /// Resolve `shape` for a phantom spanning `z0..z1` made of `body`, in a world of `outside`,
    /// with insert materials looked up by `index`.
    pub fn new(
        shape: &PhantomShape,
        z0: f64,
        z1: f64,
        body: usize,
        outside: usize,
        mut index: impl FnMut(&str) -> Result<usize>,
    ) -> Result<Self> {
        Ok(match shape {
            PhantomShape::Slab => Geometry::Uniform(body),
            PhantomShape::Step { x_mm, step_thickness_mm } => {
                Geometry::Step { x_mm: *x_mm, thin_z0: z1 - step_thickness_mm, body, outside }
            }
            PhantomShape::Cylinder { radius_mm, half_height_mm, inserts, rotation_deg } => {
                let th = rotation_deg.to_radians();
                let inserts = inserts
                    .iter()
                    .map(|i| {
                        Ok((
                            i.u_mm,
                            i.w_mm,
                            i.radius_mm,
                            i.half_height_mm.unwrap_or(*half_height_mm),
                            index(&i.material)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Geometry::Cylinder {
                    centre_z: 0.5 * (z0 + z1),
                    radius: *radius_mm,
                    half_height: *half_height_mm,
                    rotation: (th.cos(), th.sin()),
                    body,
                    outside,
                    inserts,
                }
            }
        })
    }

    /// Whether the material changes within the extent (transport then steps finely and looks
    /// the material up at every step).
    pub fn is_uniform(&self) -> bool {
        matches!(self, Geometry::Uniform(_))
    }

    /// The material at (x, y, z) (inside the phantom's z extent).
    #[inline]
    pub fn material_at(&self, x: f64, y: f64, z: f64) -> usize {
        match self {
            Geometry::Uniform(m) => *m,
            Geometry::Step { x_mm, thin_z0, body, outside } => {
                if x < *x_mm || z >= *thin_z0 {
                    *body
                } else {
                    *outside
                }
            }
            Geometry::Cylinder { centre_z, radius, half_height, rotation: (c, s), body, outside, inserts } => {
                // World → phantom frame: rotate (x, z − centre) by −θ.
                let dz = z - centre_z;
                let u = c * x + s * dz;
                let w = -s * x + c * dz;
                if u * u + w * w > radius * radius || y.abs() > *half_height {
                    return *outside;
                }
                for &(iu, iw, r, h, m) in inserts {
                    let (du, dw) = (u - iu, w - iw);
                    if du * du + dw * dw <= r * r && y.abs() <= h {
                        return m;
                    }
                }
                *body
            }
        }
    }
}
