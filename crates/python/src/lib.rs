//! gradlab for Python: the binding layer (module `gradlab._gradlab`) over the four toolkits.
//! It converts numpy arrays and Python objects, calls the library crates with the GIL released,
//! and turns their errors into Python exceptions; the computing is all in the library crates.

use pyo3::prelude::*;

mod aerosol;
mod arrays;
mod bayesopt;
mod errors;
mod json;
mod landscape;
mod lap;
mod track;

#[pymodule]
fn _gradlab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lap::linear_sum_assignment, m)?)?;
    m.add_function(wrap_pyfunction!(lap::linear_sum_assignment_many, m)?)?;
    m.add_class::<aerosol::M7>()?;
    m.add_class::<aerosol::Emulator>()?;
    m.add_function(wrap_pyfunction!(aerosol::m7_step_file, m)?)?;
    m.add_function(wrap_pyfunction!(aerosol::sample_cells, m)?)?;
    m.add_class::<track::Simulator>()?;
    m.add_function(wrap_pyfunction!(track::generate_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(track::load_split, m)?)?;
    m.add_class::<track::PyHitGraph>()?;
    m.add_class::<track::Tracker>()?;
    m.add_function(wrap_pyfunction!(track::purity_efficiency, m)?)?;
    m.add_function(wrap_pyfunction!(track::tracks_from_edges, m)?)?;
    m.add_function(wrap_pyfunction!(track::reconstruct, m)?)?;
    m.add_class::<bayesopt::Study>()?;
    m.add_class::<bayesopt::Trial>()?;
    m.add_function(wrap_pyfunction!(bayesopt::minimize, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::surface, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::hessian_eigs, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::trace, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::density, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::linear_path, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::bezier, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::save_surface, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::write_vtk, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::random_direction, m)?)?;
    m.add_function(wrap_pyfunction!(landscape::pca_directions, m)?)?;
    Ok(())
}
