//! Samples a few spun-up cells and prints one M7 step for each: state before and after,
//! radii, water and what each process did.
//!
//! `cargo run --release -p gradlab-aerosol --example one_step`

use gradlab_aerosol::M7Config;
use gradlab_aerosol::layout::{state_columns, water_columns};
use gradlab_aerosol::sampler::{SamplerConfig, sample_cells};

fn main() -> Result<(), gradlab_aerosol::Error> {
    let samples = sample_cells(&M7Config::default(), &SamplerConfig::default(), 1, 0, 4)?;
    let names = state_columns(true);
    for (i, s) in samples.iter().enumerate() {
        println!("cell {i}: {:?}", s.env);
        let mut before = [0.0; 26];
        let mut after = [0.0; 26];
        gradlab_aerosol::layout::write_state(&s.before, true, &mut before);
        gradlab_aerosol::layout::write_state(&s.after, true, &mut after);
        for (k, c) in names.iter().enumerate() {
            println!("  {:>8} {:>12.4e} -> {:>12.4e}  [{}]", c.name, before[k], after[k], c.unit);
        }
        for (c, w) in water_columns().iter().zip(s.diagnostics.water) {
            println!("  {:>8} {w:>12.4e} [{}]", c.name, c.unit);
        }
        let nm: Vec<String> = s.diagnostics.r_wet.iter().map(|r| format!("{:.1}", r * 1e7)).collect();
        let nd: Vec<String> = s.diagnostics.r_dry.iter().map(|r| format!("{:.1}", r * 1e7)).collect();
        println!("  r_wet nm {nm:?}\n  r_dry nm {nd:?}\n  {:?}", s.info);
    }
    Ok(())
}
