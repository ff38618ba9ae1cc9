//! Small statistical functions shared by the toolkits.

/// √(2π).
pub const SQRT_2PI: f64 = 2.506_628_274_631_000_7;

/// Standard normal density φ(x).
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / SQRT_2PI
}

/// Standard normal distribution function Φ(x), through `erfc` so that the lower tail keeps full
/// relative precision (Φ(−30) ≈ 4.9e−198, not 0).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Mean and sample standard deviation (divisor n − 1) of `xs`: `(NaN, NaN)` when empty, a
/// standard deviation of 0 for one value.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 { xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, v.sqrt())
}

/// Median of a sorted slice (mean of the two middle values for an even length; NaN when empty).
pub fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Median of `v` in any order (sorted by `f64::total_cmp`, so NaN sorts last; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    median_sorted(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[0.9, -700.0, 0.95, 0.8, 0.85]), 0.85);
        assert_eq!(median_sorted(&[1.0, 2.0]), 1.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn mean_std_closed_forms() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        // Σ(x − 5)² = 32, n − 1 = 7.
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_std(&[3.5]), (3.5, 0.0));
        let (m, s) = mean_std(&[]);
        assert!(m.is_nan() && s.is_nan());
    }

    #[test]
    fn published_values() {
        // Abramowitz & Stegun, table 26.1, and the tail value from R's pnorm(-30).
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
        assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((normal_cdf(-1.96) - 0.024_997_895_148_220_43).abs() < 1e-15);
        assert!((normal_cdf(-30.0) / 4.906_713_927_148_187e-198 - 1.0).abs() < 1e-12);
        assert!((normal_pdf(0.0) - 0.398_942_280_401_432_7).abs() < 1e-16);
        // The density is the derivative of the distribution function.
        for x in [-3.0, -0.5, 0.7, 2.5] {
            let h = 1e-5;
            let fd = (normal_cdf(x + h) - normal_cdf(x - h)) / (2.0 * h);
            assert!((fd - normal_pdf(x)).abs() < 1e-10, "{x}");
        }
    }
}
