//! The library of the loss-landscape and stability study of the tracking GNN (Kortus et al.,
//! TMLR 2025, "a loss landscape perspective"); the experiment `track-landscape`
//! ([`crate::experiments::landscape`]) orchestrates it.
//!
//! - [`objective`]: the network on fixed frames as a [`gradlab_landscape::Objective`]
//!   ([`objective::TrackObjective`]: Hamming loss through the blackbox gradient, BCE, track
//!   purity, edge TPR; a [`gradlab_landscape::VarMapObjective`] with the BatchNorm statistics
//!   frozen), restricted to the trainable parameters for curvature with
//!   [`gradlab_landscape::Subspace`];
//! - [`analysis`]: for a pair of solutions, **mode connectivity** (Hamming loss and edge TPR
//!   along the straight line and along trained quadratic Bézier curves,
//!   [`gradlab_landscape::connectivity`]) and **prediction instability** (min–max normalised
//!   disagreement of edge assignments and of reconstructed tracks, linear CKA of every module's
//!   activations); for one solution, **curvature** ([`gradlab_landscape::spectrum`]): top
//!   Hessian eigenvalues by Lanczos, the spectral density by SLQ of the BCE loss over the trainable parameters (the Hamming loss is
//!   piecewise constant, its Hessian is zero almost everywhere), and 2-D slices of the training
//!   loss and of the track purity along the top-2 eigenvectors;
//! - [`similarity`]: the disagreement measures and CKA; [`activations`]: per-module
//!   activations recomputed from the parameters.

pub mod activations;
pub mod analysis;
pub mod objective;
pub mod similarity;

use std::collections::BTreeSet;

use crate::tracks::{TrackFilter, build_tracks, true_primary_tracks};
use crate::training::{FrameData, MAX_PATHS};

/// For each true primary track of a frame, whether the selection reconstructs it: some kept
/// track (after the filter) whose hits all belong to that primary.
pub fn found_tracks(fd: &FrameData, selected: &[bool], filter: &TrackFilter) -> crate::Result<Vec<bool>> {
    let g = &fd.graph;
    let truth = true_primary_tracks(g);
    let found: BTreeSet<u32> = match build_tracks(g, selected, MAX_PATHS) {
        Ok(t) => filter
            .apply(g, t)
            .iter()
            .filter(|t| {
                let id = g.track[t[0] as usize];
                t.iter().all(|&n| g.is_primary[n as usize] && g.track[n as usize] == id)
            })
            .map(|t| g.track[t[0] as usize])
            .collect(),
        Err(crate::Error::TooManyPaths { .. }) => BTreeSet::new(),
        Err(e) => return Err(e),
    };
    Ok(truth.iter().map(|t| found.contains(&g.track[t[0] as usize])).collect())
}

#[cfg(test)]
mod tests;
