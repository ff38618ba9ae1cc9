//! Prediction (in)stability between two trained models: the min–max normalised disagreement
//! of Kortus et al. (TMLR 2025, after Fort et al. 2020 / Summers & Dinneen 2021) and linear
//! centred kernel alignment (Kornblith et al. 2019).

use crate::error::{Error, Result};

/// Disagreement of two binary-correctness predictors on the same items.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Disagreement {
    /// Number of items compared.
    pub items: usize,
    /// Fraction of items on which the two predictions differ.
    pub raw: f64,
    /// Error rate of model a.
    pub q_a: f64,
    /// Error rate of model b.
    pub q_b: f64,
    /// Min–max normalised disagreement
    /// `m_mm = (m − |q_a − q_b|) / (min(q_a + q_b, 1) − |q_a − q_b|)` in `[0, 1]`
    /// (NaN when the bounds coincide, e.g. both models perfect).
    pub min_max: f64,
}

/// The min–max normalisation of a disagreement rate `m` given the error rates of both models.
/// For binary predictions `|q_a − q_b| ≤ m ≤ min(q_a + q_b, 1)`, so the result lies in `[0, 1]`:
/// 0 means the models disagree as little as their error rates allow, 1 as much as possible.
pub fn min_max_normalise(m: f64, q_a: f64, q_b: f64) -> f64 {
    let lo = (q_a - q_b).abs();
    let hi = (q_a + q_b).min(1.0);
    if hi - lo <= 1e-15 { f64::NAN } else { (m - lo) / (hi - lo) }
}

/// Disagreement of two binary predictions `a`, `b` of the labels `truth` (edge assignments).
pub fn binary_disagreement(a: &[bool], b: &[bool], truth: &[bool]) -> Result<Disagreement> {
    if a.len() != truth.len() || b.len() != truth.len() {
        return Err(Error::invalid(
            "prediction lengths",
            format!("{} / {} vs {} labels", a.len(), b.len(), truth.len()),
            "both predictions as long as the labels",
        ));
    }
    let ca: Vec<bool> = a.iter().zip(truth).map(|(p, t)| p == t).collect();
    let cb: Vec<bool> = b.iter().zip(truth).map(|(p, t)| p == t).collect();
    // For binary labels the predictions differ exactly where one is right and the other wrong.
    correctness_disagreement(&ca, &cb)
}

/// Disagreement from per-item correctness of two models (`true` = correct): items on which
/// exactly one model is correct count as disagreements (reconstructed tracks: a true track is
/// an item, "correct" = the model reconstructs it).
pub fn correctness_disagreement(ca: &[bool], cb: &[bool]) -> Result<Disagreement> {
    if ca.len() != cb.len() || ca.is_empty() {
        return Err(Error::invalid(
            "correctness vectors",
            format!("lengths {} and {}", ca.len(), cb.len()),
            "equal, non-zero lengths",
        ));
    }
    let n = ca.len() as f64;
    let raw = ca.iter().zip(cb).filter(|(x, y)| x != y).count() as f64 / n;
    let q_a = ca.iter().filter(|x| !**x).count() as f64 / n;
    let q_b = cb.iter().filter(|x| !**x).count() as f64 / n;
    Ok(Disagreement { items: ca.len(), raw, q_a, q_b, min_max: min_max_normalise(raw, q_a, q_b) })
}

/// Linear CKA of two activation matrices with the same rows (`x`: `n × p`, `y`: `n × q`,
/// row-major): `‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)` with column-centred `Xᶜ`, `Yᶜ`.
/// Invariant to orthogonal transforms and isotropic scaling of either side; 1 for identical
/// representations. Computed in the feature space (`p × q` cross-covariances), so it is
/// cheap for many rows.
pub fn linear_cka(x: &[f64], p: usize, y: &[f64], q: usize) -> Result<f64> {
    if p == 0
        || q == 0
        || !x.len().is_multiple_of(p)
        || !y.len().is_multiple_of(q)
        || x.len() / p != y.len() / q
        || x.len() / p < 2
    {
        return Err(Error::invalid(
            "CKA inputs",
            format!("x {} values / {p} columns, y {} values / {q} columns", x.len(), y.len()),
            "the same number (≥ 2) of rows on both sides, ≥ 1 column each",
        ));
    }
    let n = x.len() / p;
    let centre = |a: &[f64], d: usize| {
        let mut mean = vec![0.0; d];
        for r in a.chunks(d) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        a.chunks(d).flat_map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect::<Vec<_>>()).collect::<Vec<f64>>()
    };
    let (xc, yc) = (centre(x, p), centre(y, q));
    // cross(a, b)[i][j] = Σ_r a[r][i] b[r][j]
    let cross = |a: &[f64], da: usize, b: &[f64], db: usize| {
        let mut c = vec![0.0; da * db];
        for (ra, rb) in a.chunks(da).zip(b.chunks(db)) {
            for (i, ai) in ra.iter().enumerate() {
                if *ai == 0.0 {
                    continue;
                }
                for (j, bj) in rb.iter().enumerate() {
                    c[i * db + j] += ai * bj;
                }
            }
        }
        c.iter().map(|v| v * v).sum::<f64>()
    };
    let xy = cross(&xc, p, &yc, q);
    let xx = cross(&xc, p, &xc, p).sqrt();
    let yy = cross(&yc, q, &yc, q).sqrt();
    if xx == 0.0 || yy == 0.0 {
        return Ok(f64::NAN);
    }
    Ok(xy / (xx * yy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// CKA through the n × n Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with
    /// K = XXᵀ, L = YYᵀ, HSIC(K, L) = tr(K H L H) — the definition, independent of the
    /// feature-space shortcut.
    fn cka_via_gram(x: &[f64], p: usize, y: &[f64], q: usize) -> f64 {
        let n = x.len() / p;
        let gram = |a: &[f64], d: usize| {
            let mut k = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    k[i * n + j] = (0..d).map(|c| a[i * d + c] * a[j * d + c]).sum();
                }
            }
            // H K H with H = I − 11ᵀ/n
            let mut rm = vec![0.0; n];
            let mut cm = vec![0.0; n];
            let mut all = 0.0;
            for i in 0..n {
                for j in 0..n {
                    rm[i] += k[i * n + j] / n as f64;
                    cm[j] += k[i * n + j] / n as f64;
                    all += k[i * n + j] / (n * n) as f64;
                }
            }
            for i in 0..n {
                for j in 0..n {
                    k[i * n + j] += all - rm[i] - cm[j];
                }
            }
            k
        };
        let (k, l) = (gram(x, p), gram(y, q));
        let hsic = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        hsic(&k, &l) / (hsic(&k, &k) * hsic(&l, &l)).sqrt()
    }

    #[test]
    fn cka_matches_the_gram_definition_and_its_invariances() {
        let mut rng = gradlab_core::rng::rng(7);
        let (n, p, q) = (12, 3, 5);
        let x: Vec<f64> = (0..n * p).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<f64> = (0..n * q).map(|_| rng.random_range(-1.0..1.0)).collect();
        let ours = linear_cka(&x, p, &y, q).unwrap();
        let reference = cka_via_gram(&x, p, &y, q);
        assert!((ours - reference).abs() < 1e-12, "{ours} vs {reference}");
        assert!(ours > 0.0 && ours < 1.0);
        // identical representations, rotated (2-D rotation of the first two columns), scaled
        // and shifted: CKA = 1
        let (c, s) = (0.6f64, 0.8f64);
        let xr: Vec<f64> = x
            .chunks(p)
            .flat_map(|r| vec![3.0 * (c * r[0] - s * r[1]) + 1.0, 3.0 * (s * r[0] + c * r[1]) - 2.0, 3.0 * r[2]])
            .collect();
        assert!((linear_cka(&x, p, &xr, p).unwrap() - 1.0).abs() < 1e-12);
        // hand computation: x = [1, 2, 3]ᵀ, y = [1, 0, 0]ᵀ (one column each):
        // centred x = [-1, 0, 1], y = [2/3, -1/3, -1/3]; (yᵀx)² = (−1)² = 1;
        // ‖xᵀx‖ = 2, ‖yᵀy‖ = 2/3 → CKA = 1 / (4/3) = 0.75
        let v = linear_cka(&[1.0, 2.0, 3.0], 1, &[1.0, 0.0, 0.0], 1).unwrap();
        assert!((v - 0.75).abs() < 1e-14, "{v}");
        assert!(linear_cka(&x, p, &y[..q * (n - 1)], q).is_err());
    }

    #[test]
    fn min_max_disagreement_matches_hand_computation() {
        // truth all 1; a wrong on items 0,1; b wrong on items 1,2,3 (of 10)
        let truth = vec![true; 10];
        let mut a = vec![true; 10];
        let mut b = vec![true; 10];
        a[0] = false;
        a[1] = false;
        b[1..4].iter_mut().for_each(|x| *x = false);
        let d = binary_disagreement(&a, &b, &truth).unwrap();
        // differ on 0, 2, 3 → m = 0.3; q_a = 0.2, q_b = 0.3; bounds [0.1, 0.5] → (0.3−0.1)/0.4
        assert!((d.raw - 0.3).abs() < 1e-15 && (d.q_a - 0.2).abs() < 1e-15 && (d.q_b - 0.3).abs() < 1e-15);
        assert!((d.min_max - 0.5).abs() < 1e-12, "{}", d.min_max);
        // disagreeing as little as possible (b's errors contain a's) → 0; as much as possible → 1
        let (ca, cb) = (vec![false, true, true, true], vec![false, false, true, true]);
        assert!(correctness_disagreement(&ca, &cb).unwrap().min_max.abs() < 1e-15);
        let (ca, cb) = (vec![false, true, true, true], vec![true, false, false, true]);
        assert!((correctness_disagreement(&ca, &cb).unwrap().min_max - 1.0).abs() < 1e-15);
        // error rates summing past 1 cap the upper bound at 1
        assert!((min_max_normalise(1.0, 0.7, 0.6) - 1.0).abs() < 1e-12);
        assert!(min_max_normalise(0.0, 0.0, 0.0).is_nan());
        assert!(binary_disagreement(&a, &b[..3], &truth).is_err());
    }
}
