//! Directions for landscape slices: random (optionally filter- or layer-normalised), PCA of a
//! training trajectory, Hessian eigenvectors; orthogonalisation; save and reload.

use std::path::Path;

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_len};
use crate::vecops::{axpy, dot, norm, scale};
use gradlab_core::params::ParamLayout;

/// How a random direction is rescaled to the parameters (Li et al. 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Raw Gaussian direction.
    None,
    /// Per output filter / neuron (first index of every ≥2-D tensor): `d_f ← d_f ‖θ_f‖ / (‖d_f‖ + 1e-10)`.
    #[default]
    Filter,
    /// Per tensor: `d_T ← d_T ‖θ_T‖ / (‖d_T‖ + 1e-10)`.
    Layer,
}

/// What to do with bias-like (scalar and 1-D) tensors when normalising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorParams {
    /// Set the direction to zero there (Li et al. `ignore = "biasbn"`, the default).
    #[default]
    Zero,
    /// Keep the random entries, normalised as one block to the tensor's norm.
    Keep,
    /// Copy the parameters themselves into the direction (Li et al. without `ignore`).
    Copy,
}

const NORM_EPS: f64 = 1e-10;

fn rescale_block(d: &mut [f64], theta: &[f64]) {
    let s = norm(theta) / (norm(d) + NORM_EPS);
    scale(s, d);
}

/// Checks that the entries of `layout` are contiguous, non-overlapping, cover `total`, and that
/// each `len` is the product of its shape (a layout built by hand may not be).
pub fn check_layout(layout: &ParamLayout) -> Result<()> {
    let mut offset = 0;
    for e in &layout.entries {
        let prod: usize = e.shape.iter().product();
        if e.offset != offset || e.len != prod {
            return Err(Error::invalid(
                "layout",
                format!(
                    "entry {} at offset {} len {} shape {:?} (expected offset {offset})",
                    e.name, e.offset, e.len, e.shape
                ),
                "contiguous entries in order with len = product of shape",
            ));
        }
        offset += e.len;
    }
    if offset != layout.total {
        return Err(Error::LengthMismatch { what: "layout total", expected: offset, got: layout.total });
    }
    Ok(())
}

/// A standard Gaussian vector of length `n`.
pub fn gaussian(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// Normalises direction `d` in place to the parameters `theta` block by block.
pub fn normalize(
    d: &mut [f64],
    theta: &[f64],
    layout: &ParamLayout,
    how: Normalization,
    vectors: VectorParams,
) -> Result<()> {
    check_layout(layout)?;
    check_len("direction", layout.total, d.len())?;
    check_len("theta", layout.total, theta.len())?;
    if how == Normalization::None {
        return Ok(());
    }
    for b in &layout.entries {
        let r = b.range();
        let (db, tb) = (&mut d[r.clone()], &theta[r]);
        if b.is_vector() {
            match vectors {
                VectorParams::Zero => db.fill(0.0),
                VectorParams::Copy => db.copy_from_slice(tb),
                VectorParams::Keep => rescale_block(db, tb),
            }
            continue;
        }
        match how {
            Normalization::Layer => rescale_block(db, tb),
            Normalization::Filter => {
                let rows = b.shape[0];
                if rows == 0 {
                    continue;
                }
                let per = b.len / rows;
                for (dr, tr) in db.chunks_mut(per).zip(tb.chunks(per)) {
                    rescale_block(dr, tr);
                }
            }
            Normalization::None => unreachable!(),
        }
    }
    Ok(())
}

/// A Gaussian direction normalised to `theta`.
pub fn random_direction(
    theta: &[f64],
    layout: &ParamLayout,
    how: Normalization,
    vectors: VectorParams,
    rng: &mut impl Rng,
) -> Result<Vec<f64>> {
    let mut d = gaussian(theta.len(), rng);
    normalize(&mut d, theta, layout, how, vectors)?;
    Ok(d)
}

/// Cosine of the angle between two vectors (0 if either is zero).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot(a, b) / (na * nb) }
}

/// Removes from `d` its component along `along` (Gram–Schmidt) and rescales it to its original
/// norm, so a normalised direction keeps its scale.
pub fn orthogonalize(along: &[f64], d: &mut [f64]) -> Result<()> {
    check_len("direction", along.len(), d.len())?;
    let n0 = norm(d);
    let aa = dot(along, along);
    if aa == 0.0 {
        return Ok(());
    }
    let c = dot(along, d) / aa;
    axpy(-c, along, d);
    let n1 = norm(d);
    if n1 <= 1e-12 * n0 {
        return Err(Error::invalid(
            "direction",
            format!("cosine {:.6} with the first direction", c * aa.sqrt() / n0),
            "a direction not parallel to the one it is orthogonalised against",
        ));
    }
    scale(n0 / n1, d);
    Ok(())
}

/// Principal directions of a training trajectory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pca {
    /// Unit principal directions (right singular vectors), largest first.
    pub directions: Vec<Vec<f64>>,
    /// Singular values of the (possibly centred) difference matrix.
    pub singular_values: Vec<f64>,
    /// Fraction of the total variance explained by each returned direction.
    pub explained_variance_ratio: Vec<f64>,
}

/// PCA of a trajectory: rows `θ_i − reference` (`reference` is usually the final checkpoint),
/// optionally column-centred (as scikit-learn's PCA in Li et al.'s code does). The SVD of the
/// small `T × n` matrix is computed through its `T × T` Gram matrix (eigendecomposition on faer):
/// `M Mᵀ = U Σ² Uᵀ`, `v_j = Mᵀ u_j / σ_j`.
pub fn pca_directions(trajectory: &[Vec<f64>], reference: &[f64], k: usize, center_columns: bool) -> Result<Pca> {
    let t = trajectory.len();
    let n = reference.len();
    if k == 0 || k > t {
        return Err(Error::invalid(
            "pca components",
            format!("{k} (with {t} checkpoints)"),
            "1 ≤ k ≤ number of checkpoints",
        ));
    }
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(t);
    for p in trajectory {
        check_len("checkpoint", n, p.len())?;
        rows.push(p.iter().zip(reference).map(|(a, b)| a - b).collect());
    }
    if center_columns {
        let mut mean = vec![0.0; n];
        for r in &rows {
            axpy(1.0 / t as f64, r, &mut mean);
        }
        for r in &mut rows {
            axpy(-1.0, &mean, r);
        }
    }
    let mut g = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..=i {
            let v = dot(&rows[i], &rows[j]);
            g[i * t + j] = v;
            g[j * t + i] = v;
        }
    }
    let (vals, vecs) = crate::hessian::dense_symmetric_eigen(t, &g)?;
    let total: f64 = vals.iter().map(|v| v.max(0.0)).sum();
    let mut directions = Vec::with_capacity(k);
    let mut singular_values = Vec::with_capacity(k);
    let mut evr = Vec::with_capacity(k);
    for j in 0..k {
        let idx = t - 1 - j;
        let lam = vals[idx].max(0.0);
        let sigma = lam.sqrt();
        if sigma.is_nan() || sigma <= 1e-12 * total.sqrt().max(f64::MIN_POSITIVE) {
            return Err(Error::invalid(
                "pca components",
                format!("{k}: singular value {j} is {sigma:e}"),
                "at most the rank of the trajectory differences",
            ));
        }
        let mut v = vec![0.0; n];
        for (c, r) in vecs[idx].iter().zip(&rows) {
            axpy(*c, r, &mut v);
        }
        // normalise explicitly (σ from the Gram matrix loses half the digits for tiny σ)
        let nv = norm(&v);
        scale(1.0 / nv, &mut v);
        directions.push(v);
        singular_values.push(sigma);
        evr.push(lam / total);
    }
    Ok(Pca { directions, singular_values, explained_variance_ratio: evr })
}

/// How a set of directions was made (stored with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectionKind {
    /// Gaussian random, normalised.
    Random {
        /// Normalisation.
        normalization: Normalization,
        /// Bias / 1-D handling.
        vectors: VectorParams,
        /// RNG seed.
        seed: u64,
    },
    /// PCA of a trajectory.
    Pca {
        /// Explained variance ratio per direction.
        explained_variance_ratio: Vec<f64>,
    },
    /// Hessian eigenvectors.
    Hessian {
        /// Eigenvalue per direction.
        eigenvalues: Vec<f64>,
    },
    /// Anything else.
    Custom {
        /// Free text.
        note: String,
    },
}

/// A centre point and one or two directions, saved together with the surface.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionSet {
    /// How they were made.
    pub kind: DirectionKind,
    /// The centre θc of the slice.
    pub center: Vec<f64>,
    /// The directions (each of the centre's length).
    pub directions: Vec<Vec<f64>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectionMeta {
    kind: DirectionKind,
    dim: usize,
    count: usize,
}

impl DirectionSet {
    /// Validates lengths.
    pub fn new(kind: DirectionKind, center: Vec<f64>, directions: Vec<Vec<f64>>) -> Result<Self> {
        if directions.is_empty() {
            return Err(Error::invalid("directions", 0, "at least one direction"));
        }
        for d in &directions {
            check_len("direction", center.len(), d.len())?;
        }
        Ok(Self { kind, center, directions })
    }

    /// Writes `<stem>.json` (kind, sizes), `<stem>_center.npy` and `<stem>.npy` (`count × dim`, f64)
    /// into `dir`.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let n = self.center.len();
        let meta = DirectionMeta { kind: self.kind.clone(), dim: n, count: self.directions.len() };
        gradlab_core::io::write_json(&dir.join(format!("{stem}.json")), &meta)?;
        gradlab_core::io::write_npy_1d(&dir.join(format!("{stem}_center.npy")), &self.center)?;
        let flat: Vec<f64> = self.directions.iter().flatten().copied().collect();
        Ok(gradlab_core::io::write_npy_2d(&dir.join(format!("{stem}.npy")), self.directions.len(), n, &flat)?)
    }

    /// Reads what [`DirectionSet::save`] wrote, checking the sizes agree.
    pub fn load(dir: &Path, stem: &str) -> Result<Self> {
        let meta_path = dir.join(format!("{stem}.json"));
        let meta: DirectionMeta = gradlab_core::io::read_json(&meta_path)?;
        let center = gradlab_core::io::read_npy_1d(&dir.join(format!("{stem}_center.npy")))?;
        let dpath = dir.join(format!("{stem}.npy"));
        let (rows, cols, flat) = gradlab_core::io::read_npy_2d(&dpath)?;
        if center.len() != meta.dim || rows != meta.count || cols != meta.dim {
            return Err(Error::Mismatch {
                path: dpath,
                reason: format!(
                    "metadata says {} directions of dim {}, files hold centre dim {} and {rows}×{cols}",
                    meta.count,
                    meta.dim,
                    center.len()
                ),
            });
        }
        let directions = flat.chunks(cols.max(1)).map(<[f64]>::to_vec).collect();
        Self::new(meta.kind, center, directions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ParamLayout {
        ParamLayout::from_shapes([
            ("a.weight", vec![3, 4]),
            ("a.bias", vec![3]),
            ("conv", vec![2, 2, 3, 3]),
            ("s", vec![]),
        ])
    }

    #[test]
    fn filter_normalisation_matches_row_norms() {
        let mut rng = gradlab_core::rng::rng(0);
        let l = layout();
        let theta = gaussian(l.total, &mut rng);
        for vectors in [VectorParams::Zero, VectorParams::Keep, VectorParams::Copy] {
            let d = random_direction(&theta, &l, Normalization::Filter, vectors, &mut rng).unwrap();
            for b in &l.entries {
                let (db, tb) = (&d[b.range()], &theta[b.range()]);
                if b.is_vector() {
                    match vectors {
                        VectorParams::Zero => assert!(db.iter().all(|x| *x == 0.0)),
                        VectorParams::Copy => assert_eq!(db, tb),
                        VectorParams::Keep => assert!((norm(db) - norm(tb)).abs() < 1e-9),
                    }
                } else {
                    let per = b.len / b.shape[0];
                    for (dr, tr) in db.chunks(per).zip(tb.chunks(per)) {
                        assert!((norm(dr) - norm(tr)).abs() < 1e-9 * norm(tr));
                    }
                }
            }
        }
    }

    #[test]
    fn layer_normalisation_matches_tensor_norms_and_none_is_identity() {
        let mut rng = gradlab_core::rng::rng(1);
        let l = layout();
        let theta = gaussian(l.total, &mut rng);
        let d = random_direction(&theta, &l, Normalization::Layer, VectorParams::Zero, &mut rng).unwrap();
        let w = &l.entries[2];
        assert!((norm(&d[w.range()]) - norm(&theta[w.range()])).abs() < 1e-9);
        // layer normalisation does not equalise rows
        let per = w.len / w.shape[0];
        let r0 = norm(&d[w.offset..w.offset + per]) / norm(&theta[w.offset..w.offset + per]);
        let r1 = norm(&d[w.offset + per..w.offset + 2 * per]) / norm(&theta[w.offset + per..w.offset + 2 * per]);
        assert!((r0 - r1).abs() > 1e-3);
        let mut raw = gaussian(l.total, &mut rng);
        let copy = raw.clone();
        normalize(&mut raw, &theta, &l, Normalization::None, VectorParams::Zero).unwrap();
        assert_eq!(raw, copy);
        let mut short = vec![0.0; 3];
        assert!(matches!(
            normalize(&mut short, &theta, &l, Normalization::Filter, VectorParams::Zero),
            Err(Error::LengthMismatch { what: "direction", .. })
        ));
    }

    #[test]
    fn orthogonalize_keeps_norm_and_removes_overlap() {
        let mut rng = gradlab_core::rng::rng(2);
        let a = gaussian(50, &mut rng);
        let mut b = gaussian(50, &mut rng);
        axpy(0.7, &a, &mut b);
        let nb = norm(&b);
        orthogonalize(&a, &mut b).unwrap();
        assert!(cosine(&a, &b).abs() < 1e-12);
        assert!((norm(&b) - nb).abs() < 1e-12 * nb);
        let mut par = a.clone();
        scale(2.0, &mut par);
        assert!(orthogonalize(&a, &mut par).is_err());
    }

    /// Reference: faer's dense thin SVD of the difference matrix.
    #[test]
    fn pca_matches_dense_svd() {
        let mut rng = gradlab_core::rng::rng(3);
        for (t, n, center) in [(6usize, 40usize, false), (9, 25, true), (3, 3, false)] {
            let reference = gaussian(n, &mut rng);
            // a trajectory with decaying variance along a few directions
            let traj: Vec<Vec<f64>> = (0..t)
                .map(|i| {
                    reference
                        .iter()
                        .map(|r| r + (i as f64 + 1.0) * rng.random_range(-1.0..1.0) / (1.0 + i as f64))
                        .collect()
                })
                .collect();
            let k = 2.min(t);
            let pca = pca_directions(&traj, &reference, k, center).unwrap();
            let mut rows: Vec<Vec<f64>> =
                traj.iter().map(|p| p.iter().zip(&reference).map(|(a, b)| a - b).collect()).collect();
            if center {
                let mean: Vec<f64> = (0..n).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / t as f64).collect();
                for r in &mut rows {
                    axpy(-1.0, &mean, r);
                }
            }
            let m = faer::Mat::<f64>::from_fn(t, n, |i, j| rows[i][j]);
            let svd = m.thin_svd().unwrap();
            let s = svd.S();
            let v = svd.V();
            let total: f64 = (0..t.min(n)).map(|i| s[i] * s[i]).sum();
            for j in 0..k {
                assert!((pca.singular_values[j] - s[j]).abs() < 1e-9 * s[0], "t={t} n={n}: σ{j}");
                assert!((pca.explained_variance_ratio[j] - s[j] * s[j] / total).abs() < 1e-9);
                let vj: Vec<f64> = (0..n).map(|i| v[(i, j)]).collect();
                let c = dot(&vj, &pca.directions[j]).abs();
                assert!((c - 1.0).abs() < 1e-9, "t={t} n={n}: |cos| {c}");
            }
        }
        assert!(pca_directions(&[vec![1.0; 3]], &[0.0; 3], 2, false).is_err());
        // rank-1 trajectory: a second component does not exist
        let traj = vec![vec![1.0, 0.0], vec![2.0, 0.0]];
        assert!(matches!(pca_directions(&traj, &[0.0, 0.0], 2, false), Err(Error::Invalid { .. })));
    }

    #[test]
    fn direction_sets_round_trip_through_files() {
        let mut rng = gradlab_core::rng::rng(4);
        let set = DirectionSet::new(
            DirectionKind::Pca { explained_variance_ratio: vec![0.8, 0.1] },
            gaussian(17, &mut rng),
            vec![gaussian(17, &mut rng), gaussian(17, &mut rng)],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        set.save(dir.path(), "plane").unwrap();
        let back = DirectionSet::load(dir.path(), "plane").unwrap();
        assert_eq!(back, set);
        assert!(matches!(DirectionSet::load(dir.path(), "missing"), Err(Error::Core(gradlab_core::Error::Io { .. }))));
        assert!(
            DirectionSet::new(DirectionKind::Custom { note: String::new() }, vec![0.0; 2], vec![vec![0.0; 3]]).is_err()
        );
    }
}
