//! Seeded random numbers.
//!
//! All randomness in gradlab flows from explicit `u64` seeds through [`SeededRng`]
//! (ChaCha8, whose output is specified and stable across platforms and rand versions, unlike
//! `StdRng`). Independent streams for parallel work come from [`derive_seed`], so results do
//! not depend on the number of threads.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The random number generator used everywhere in gradlab.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// A generator from a seed.
pub fn rng(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

/// A well-mixed seed for stream `stream` of `seed` (SplitMix64 finaliser of both).
///
/// Use it to give item `i` of a parallel loop its own generator: `rng(derive_seed(seed, i))`.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(mix(seed) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// A generator for stream `stream` of `seed`.
pub fn stream_rng(seed: u64, stream: u64) -> SeededRng {
    rng(derive_seed(seed, stream))
}

/// `n` standard-normal draws scaled to `mean + std * z`.
pub fn normal_vec<R: Rng + ?Sized>(r: &mut R, n: usize, mean: f64, std: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(r);
            mean + std * z
        })
        .collect()
}

/// `n` uniform draws on `[lo, hi)`.
pub fn uniform_vec<R: Rng + ?Sized>(r: &mut R, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation<R: Rng + ?Sized>(r: &mut R, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = r.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let a = normal_vec(&mut rng(7), 100, 0.0, 1.0);
        let b = normal_vec(&mut rng(7), 100, 0.0, 1.0);
        let c = normal_vec(&mut rng(8), 100, 0.0, 1.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn streams_differ_and_are_stable() {
        assert_ne!(derive_seed(1, 0), derive_seed(1, 1));
        assert_ne!(derive_seed(1, 0), derive_seed(2, 0));
        assert_eq!(derive_seed(5, 9), derive_seed(5, 9));
        let x: u64 = stream_rng(3, 4).random();
        let y: u64 = stream_rng(3, 4).random();
        assert_eq!(x, y);
    }

    #[test]
    fn normal_moments() {
        let v = normal_vec(&mut rng(1), 200_000, 2.0, 3.0);
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        // Standard error of the mean 3/sqrt(2e5) ≈ 0.0067.
        assert!((m - 2.0).abs() < 0.03, "{m}");
        assert!((s - 3.0).abs() < 0.03, "{s}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(&mut rng(0), 1000);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }
}
