//! The `m7-step` file interface (library code behind `cargo xtask m7-step`): read cells from an
//! `.npy` table in M7's interface order, step each with the box model, write the result table.

use crate::box_model::M7;
use crate::config::M7Config;
use crate::dataset::read_table;
use crate::error::{Error, Result};
use crate::layout::{self, Column, STEP_INPUT_COLS, STEP_OUTPUT_COLS};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What [`m7_step`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// Cells stepped.
    pub rows: usize,
    /// Columns of the input (33, or 34 with the boundary-layer flag).
    pub input_columns: usize,
    /// Columns of the output (58).
    pub output_columns: usize,
    /// The output file.
    pub output: PathBuf,
    /// JSON file next to the output listing its columns and units.
    pub columns_file: PathBuf,
    /// The configuration used.
    pub config: M7Config,
    /// Wall time of the stepping itself \[s\].
    pub seconds: f64,
}

/// Validates rows in the `m7-step` layout: 33 columns (M7 interface order: pressure,
/// temperature, RH, ionisation, H2SO4 production, H2SO4 gas, cloud cover, forest fraction,
/// 18 masses, 7 numbers), optionally a 34th boundary-layer flag (0 or 1). Every value must lie
/// inside the physical bounds of its column (module [`crate::state`]: e.g. masses 0 … 1e7
/// µg m⁻³, numbers 0 … 1e10 cm⁻³); the first row outside is refused as
/// [`Error::NonPhysical`] naming the row, the column with its unit and the allowed range.
pub fn validate_step_rows(x: &ArrayView2<f64>) -> Result<()> {
    let cols = x.ncols();
    if cols != STEP_INPUT_COLS && cols != STEP_INPUT_COLS + 1 {
        return Err(Error::Shape {
            what: "m7-step input".into(),
            expected: format!(
                "[N, {STEP_INPUT_COLS}] (pressure, temperature, RH, ionisation, H2SO4 production, \
                 H2SO4, cloud cover, forest fraction, 18 masses, 7 numbers) or [N, {}] with a \
                 trailing boundary-layer flag",
                STEP_INPUT_COLS + 1
            ),
            got: x.shape().to_vec(),
        });
    }
    let names = layout::step_input_columns();
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let row = row.to_slice().map(|s| s.to_vec()).unwrap_or_else(|| row.to_vec());
        if cols > STEP_INPUT_COLS {
            let bl = row[STEP_INPUT_COLS];
            if bl != 0.0 && bl != 1.0 {
                return Err(Error::NonPhysical {
                    row: i,
                    column: "boundary_layer".into(),
                    value: bl,
                    allowed: "0 or 1".into(),
                });
            }
        }
        let (env, state) = layout::read_step_row(&row);
        let with_unit = |e: Error| match e {
            Error::NonPhysical { row, column, value, allowed } => {
                let column = names
                    .iter()
                    .find(|c| c.name == column)
                    .map(|c| format!("{} [{}]", c.name, c.unit))
                    .unwrap_or(column);
                Error::NonPhysical { row, column, value, allowed }
            }
            other => other,
        };
        env.validate(i).map_err(with_unit)?;
        state.validate(i).map_err(with_unit)?;
    }
    Ok(())
}

/// Steps every row of `x` (validated `m7-step` layout) in parallel; returns N × 58: the 33
/// columns after the step, wet radii, dry radii, densities (7 each) and water (4).
pub fn step_rows(model: &M7, x: &ArrayView2<f64>) -> Result<Array2<f64>> {
    validate_step_rows(x)?;
    let mut out = Array2::zeros((x.nrows(), STEP_OUTPUT_COLS));
    let cols = x.ncols();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let os = out.as_slice_mut().expect("standard layout");
    os.par_chunks_mut(STEP_OUTPUT_COLS).zip(xs.par_chunks(cols)).for_each(|(o, row)| {
        let (env, mut s) = layout::read_step_row(row);
        let (d, _) = model.step(&env, &mut s);
        layout::write_step_row(&env, &s, &mut o[..STEP_INPUT_COLS]);
        let diag = d.r_wet.iter().chain(&d.r_dry).chain(&d.density).chain(&d.water);
        for (o, v) in o[STEP_INPUT_COLS..].iter_mut().zip(diag) {
            *o = *v;
        }
    });
    Ok(out)
}

/// The JSON file written beside `output` naming its columns: `<output stem>.columns.json`.
pub fn columns_file(output: &Path) -> PathBuf {
    output.with_extension("columns.json")
}

/// Applies one box-model step to the cells in `input` (`.npy`, float32 or float64, N × 33 or
/// N × 34, see [`validate_step_rows`]) and writes N × 58 float64 rows to `output` (see
/// [`layout::step_output_columns`]), plus `<output>.columns.json` ([`columns_file`]) naming every
/// column with its unit. `config` is an optional JSON [`M7Config`] (defaults otherwise).
///
/// An existing `output` or columns file is refused ([`Error::Invalid`] on `output`, before the
/// input is read) unless `overwrite` is set. Both files are written atomically (a temporary file
/// renamed over the target), so a kill leaves the old file or the new one.
pub fn m7_step(input: &Path, output: &Path, config: Option<&Path>, overwrite: bool) -> Result<StepReport> {
    let columns_file = columns_file(output);
    if !overwrite {
        for existing in [output, columns_file.as_path()] {
            if existing.exists() {
                return Err(Error::invalid(
                    "output",
                    existing.display(),
                    format!(
                        "a path where neither {} nor {} exists yet, or pass --overwrite to replace them",
                        output.display(),
                        columns_file.display()
                    ),
                ));
            }
        }
    }
    let cfg = match config {
        Some(p) => M7Config::from_json_file(p)?,
        None => M7Config::default(),
    };
    let model = M7::new(cfg)?;
    let x = read_table(input)?;
    let t0 = std::time::Instant::now();
    let y = step_rows(&model, &x.view()).map_err(|e| match e {
        Error::Shape { expected, got, .. } => Error::Shape { what: input.display().to_string(), expected, got },
        other => other,
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    gradlab_core::io::write_npy(output, &y)?;
    let cols: Vec<Column> = layout::step_output_columns();
    gradlab_core::io::write_json(&columns_file, &cols)?;
    Ok(StepReport {
        rows: x.nrows(),
        input_columns: x.ncols(),
        output_columns: y.ncols(),
        output: output.to_path_buf(),
        columns_file,
        config: cfg,
        seconds,
    })
}
