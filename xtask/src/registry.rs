//! Every crate's exported experiments.

use gradlab_core::experiment::Experiment;

/// All entry points, from every crate.
pub fn all() -> Vec<Experiment> {
    let mut v = gradlab_core::experiments();
    v.extend(gradlab_landscape::experiments());
    v.extend(gradlab_bayesopt::experiments());
    v.extend(gradlab_aerosol::experiments());
    v.extend(gradlab_track::experiments());
    v.sort_by_key(|e| e.entry);
    v
}

/// The entry point with this name.
pub fn find(entry: &str) -> Option<Experiment> {
    all().into_iter().find(|e| e.entry == entry)
}
