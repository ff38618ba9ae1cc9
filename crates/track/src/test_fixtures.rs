//! Fixtures shared by the unit tests of several modules.

use rand::Rng;

use crate::sim::{Frame, Hit};

/// Straight-ish tracks through 12 layers with small random kinks, crossing at random.
pub(crate) fn toy_frame(seed: u64, tracks: usize) -> Frame {
    let mut rng = gradlab_core::rng::rng(seed);
    let mut hits = Vec::new();
    for t in 0..tracks {
        let (mut x, mut y) = (rng.random_range(-8.0..8.0f32), rng.random_range(-8.0..8.0f32));
        let (mut tx, mut ty) = (rng.random_range(-0.03..0.03f32), rng.random_range(-0.03..0.03f32));
        let mut zp = 0.0;
        for l in 0..12u16 {
            let z = if l < 2 { l as f32 * 57.8 } else { 110.0 + (l - 2) as f32 * 5.5 };
            x += tx * (z - zp);
            y += ty * (z - zp);
            zp = z;
            tx += rng.random_range(-0.02..0.02f32);
            ty += rng.random_range(-0.02..0.02f32);
            let edep = if l == 11 { 0.3 } else { 0.03 };
            hits.push(Hit { layer: l, x, y, z, edep, cluster: 4, track: t as u32, primary: true });
        }
    }
    Frame { hits, spot: [0.0, 0.0], primaries: tracks as u32 }
}
