//! Dataset writer/reader and the `m7-step` file entry point.

use gradlab_aerosol::dataset::{Dtype, read_dataset, read_table, tables, write_dataset};
use gradlab_aerosol::layout::{STEP_INPUT_COLS, STEP_OUTPUT_COLS, read_step_row, write_step_row};
use gradlab_aerosol::sampler::{SamplerConfig, sample_cells};
use gradlab_aerosol::step_file::{columns_file, m7_step};
use gradlab_aerosol::{Error, M7, M7Config};
use ndarray::{Array2, s};
use ndarray_npy::write_npy;

fn small_samples(n: usize) -> Vec<gradlab_aerosol::sampler::Sample> {
    let cfg = SamplerConfig { spinup_steps: [1, 6], ..Default::default() };
    sample_cells(&M7Config::default(), &cfg, 11, 0, n).unwrap()
}

#[test]
fn dataset_round_trips_in_the_reference_layout() {
    let samples = small_samples(200);
    for (sea_salt, dtype) in [(false, Dtype::F32), (true, Dtype::F64)] {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = tables(&samples, sea_salt);
        assert_eq!(x.ncols(), if sea_salt { 34 } else { 32 });
        assert_eq!(y.ncols(), if sea_salt { 30 } else { 28 });
        let m = write_dataset(
            dir.path(),
            &x,
            &y,
            sea_salt,
            (0.8, 0.1),
            9,
            dtype,
            &M7Config::default(),
            &SamplerConfig::default(),
        )
        .unwrap();
        assert_eq!(m.counts.train + m.counts.val + m.counts.test, 200);
        assert_eq!((m.counts.train, m.counts.val), (160, 20));
        for f in ["X_train.npy", "y_train.npy", "X_val.npy", "y_val.npy", "X_test.npy", "y_test.npy", "manifest.json"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        let d = read_dataset(dir.path()).unwrap();
        assert_eq!(d.include_sea_salt, sea_salt);
        assert_eq!(d.x_train.nrows(), 160);
        // Rows are a permutation of the input: every X row has its y row beside it.
        let all_x: Vec<Vec<f32>> = x.rows().into_iter().map(|r| r.iter().map(|v| *v as f32).collect()).collect();
        for (xr, yr) in d.x_test.rows().into_iter().zip(d.y_test.rows()) {
            let i = all_x.iter().position(|r| r.as_slice() == xr.as_slice().unwrap()).expect("row present");
            let expect: Vec<f32> = y.row(i).iter().map(|v| *v as f32).collect();
            assert_eq!(yr.to_vec(), expect);
        }
        // The manifest names the columns with units.
        let m = d.manifest.unwrap();
        assert_eq!(m.x_columns[0].name, "pressure");
        assert_eq!(m.y_columns.last().unwrap().name, "water_cs");
        assert_eq!(m.y_columns.last().unwrap().unit, "kg m-3");
    }
}

#[test]
fn reader_accepts_published_style_files_and_rejects_bad_shapes() {
    let dir = tempfile::tempdir().unwrap();
    // The published dataset has no manifest; float64 arrays.
    for split in ["train", "val", "test"] {
        write_npy(dir.path().join(format!("X_{split}.npy")), &Array2::<f64>::zeros((5, 32))).unwrap();
        write_npy(dir.path().join(format!("y_{split}.npy")), &Array2::<f64>::ones((5, 28))).unwrap();
    }
    let d = read_dataset(dir.path()).unwrap();
    assert!(d.manifest.is_none() && !d.include_sea_salt);
    assert_eq!(d.y_val[[4, 27]], 1.0f32);
    // Wrong y width.
    write_npy(dir.path().join("y_val.npy"), &Array2::<f64>::ones((5, 27))).unwrap();
    let e = read_dataset(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("y_val.npy") && e.to_string().contains("28"), "{e}");
    // Row mismatch.
    write_npy(dir.path().join("y_val.npy"), &Array2::<f64>::ones((4, 28))).unwrap();
    let e = read_dataset(dir.path()).unwrap_err().to_string();
    assert!(e.contains("as many rows"), "{e}");
    // Wrong dtype.
    write_npy(dir.path().join("y_val.npy"), &Array2::<i32>::ones((5, 28))).unwrap();
    let e = read_dataset(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e}");
    // Wrong dimensionality.
    write_npy(dir.path().join("y_val.npy"), &ndarray::Array1::<f64>::ones(5)).unwrap();
    let e = read_dataset(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    // Missing file.
    std::fs::remove_file(dir.path().join("y_val.npy")).unwrap();
    assert!(matches!(read_dataset(dir.path()).unwrap_err(), Error::Io { .. }));
}

fn step_input(n: usize) -> Array2<f64> {
    let samples = small_samples(n);
    let mut x = Array2::zeros((n, STEP_INPUT_COLS));
    for (i, s) in samples.iter().enumerate() {
        write_step_row(&s.env, &s.before, x.row_mut(i).as_slice_mut().unwrap());
    }
    x
}

#[test]
fn m7_step_file_matches_the_library_step() {
    let dir = tempfile::tempdir().unwrap();
    let x = step_input(50);
    let input = dir.path().join("states.npy");
    let output = dir.path().join("next.npy");
    write_npy(&input, &x).unwrap();
    let cfg_path = dir.path().join("m7.json");
    std::fs::write(&cfg_path, r#"{"dt": 600, "water": "kappa"}"#).unwrap();
    let report = m7_step(&input, &output, Some(&cfg_path), false).unwrap();
    assert_eq!((report.rows, report.input_columns, report.output_columns), (50, 33, STEP_OUTPUT_COLS));
    assert_eq!(report.config.dt, 600.0);
    assert!(report.columns_file.exists());
    let y = read_table(&output).unwrap();
    let model = M7::new(report.config).unwrap();
    for i in 0..50 {
        let (env, mut st) = read_step_row(x.row(i).as_slice().unwrap());
        let (d, _) = model.step(&env, &mut st);
        let mut expect = [0.0; STEP_INPUT_COLS];
        write_step_row(&env, &st, &mut expect);
        assert_eq!(y.slice(s![i, ..STEP_INPUT_COLS]).to_vec(), expect.to_vec());
        assert_eq!(y[[i, STEP_INPUT_COLS]], d.r_wet[0]);
        assert_eq!(y[[i, STEP_OUTPUT_COLS - 1]], d.water[3]);
    }
    // float32 input is accepted too, and a 34th boundary-layer column.
    let mut x34 = Array2::zeros((50, 34));
    x34.slice_mut(s![.., ..33]).assign(&x);
    x34.column_mut(33).fill(1.0);
    write_npy(&input, &x34.mapv(|v| v as f32)).unwrap();
    assert_eq!(m7_step(&input, &output, None, true).unwrap().input_columns, 34);
}

#[test]
fn m7_step_rejects_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("states.npy");
    let output = dir.path().join("next.npy");
    // Wrong column count.
    write_npy(&input, &Array2::<f64>::zeros((3, 32))).unwrap();
    let e = m7_step(&input, &output, None, false).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }));
    let msg = e.to_string();
    assert!(msg.contains("33") && msg.contains("states.npy") && msg.contains("[3, 32]"), "{msg}");
    // Negative mass, RH > 1, percent RH, bad flag.
    let x = step_input(4);
    for (col, value, what) in [(10, -1.0, "so4_as"), (2, 1.5, "rh"), (2, 55.0, "rh"), (0, 0.0, "pressure")] {
        let mut bad = x.clone();
        bad[[2, col]] = value;
        write_npy(&input, &bad).unwrap();
        let e = m7_step(&input, &output, None, false).unwrap_err();
        assert!(matches!(e, Error::NonPhysical { row: 2, .. }), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let mut bad = Array2::zeros((4, 34));
    bad.slice_mut(s![.., ..33]).assign(&x);
    bad[[1, 33]] = 0.5;
    write_npy(&input, &bad).unwrap();
    assert!(m7_step(&input, &output, None, false).unwrap_err().to_string().contains("boundary_layer"));
    // Bad config.
    write_npy(&input, &x).unwrap();
    let cfg = dir.path().join("bad.json");
    std::fs::write(&cfg, r#"{"dt": 0}"#).unwrap();
    assert!(m7_step(&input, &output, Some(&cfg), false).unwrap_err().to_string().contains("`dt`"));
    std::fs::write(&cfg, r#"{"time_step": 600}"#).unwrap();
    assert!(matches!(m7_step(&input, &output, Some(&cfg), false).unwrap_err(), Error::Json { .. }));
}

/// A row in the `m7-step` layout built from the sampler's first cell, for bound tests.
fn one_row() -> Array2<f64> {
    step_input(1)
}

#[test]
fn m7_step_refuses_values_outside_the_physical_bounds_of_their_column() {
    use gradlab_aerosol::state::{MAX_H2SO4_GAS, MAX_MASS, MAX_NUMBER, MAX_SULFATE};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("states.npy");
    let output = dir.path().join("next.npy");
    let base = step_input(3);
    // The issue's case: masses of 1e300 (wet radii of 1e94 cm) are refused with row, column,
    // unit and the allowed range; so are a huge number, H2SO4 gas and rates, and infinities.
    for (col, value, what, allowed) in [
        (13, 1e300, "bc_as [ug m-3]", "0 <= value <= 1e7 ug m-3"),
        (10, 1e300, "so4_as [molecules cm-3]", "0 <= value <= 1e17 molecules cm-3"),
        (10, MAX_SULFATE * 1.01, "so4_as", "1e17"),
        (25, MAX_MASS * 2.0, "du_ci [ug m-3]", "1e7"),
        (28, MAX_NUMBER * 2.0, "n_as [cm-3]", "0 <= value <= 1e10 cm-3"),
        (5, MAX_H2SO4_GAS * 2.0, "h2so4 [molecules cm-3]", "1e13"),
        (4, 1e12, "h2so4_production", "1e9"),
        (3, 1e7, "ionisation", "1e4"),
        (26, f64::INFINITY, "n_ns", "finite"),
    ] {
        let mut bad = base.clone();
        bad[[1, col]] = value;
        write_npy(&input, &bad).unwrap();
        let e = m7_step(&input, &output, None, false).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::NonPhysical { row: 1, .. }), "{msg}");
        assert!(msg.contains("row 1") && msg.contains(what) && msg.contains(allowed), "{msg}");
        assert!(!output.exists(), "nothing is written for a refused input");
    }
    // At the caps themselves the row is accepted and the step stays finite.
    let mut edge = one_row();
    for c in 8..12 {
        edge[[0, c]] = MAX_SULFATE;
    }
    for c in 12..26 {
        edge[[0, c]] = MAX_MASS;
    }
    for c in 26..33 {
        edge[[0, c]] = MAX_NUMBER;
    }
    edge[[0, 5]] = MAX_H2SO4_GAS;
    write_npy(&input, &edge).unwrap();
    m7_step(&input, &output, None, false).unwrap();
    let y = read_table(&output).unwrap();
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
}

#[test]
fn m7_step_refuses_to_overwrite_its_output_or_columns_file_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("states.npy");
    let output = dir.path().join("next.npy");
    write_npy(&input, &step_input(5)).unwrap();
    let first = m7_step(&input, &output, None, false).unwrap();
    assert_eq!(first.columns_file, columns_file(&output));
    assert_eq!(first.columns_file, dir.path().join("next.columns.json"));
    // A second run into the same output is refused, naming the output and --overwrite, and
    // leaves the file as it was.
    let before = std::fs::read(&output).unwrap();
    write_npy(&input, &step_input(7)).unwrap();
    let e = m7_step(&input, &output, None, false).unwrap_err();
    assert!(matches!(&e, Error::Invalid { field, .. } if field == "output"), "{e}");
    assert!(e.to_string().contains("next.npy") && e.to_string().contains("--overwrite"), "{e}");
    assert_eq!(std::fs::read(&output).unwrap(), before);
    // Only the columns file left over (the output deleted by hand): refused as well.
    std::fs::remove_file(&output).unwrap();
    let e = m7_step(&input, &output, None, false).unwrap_err().to_string();
    assert!(e.contains("next.columns.json") && e.contains("--overwrite"), "{e}");
    assert!(!output.exists());
    // With overwrite both are replaced.
    assert_eq!(m7_step(&input, &output, None, true).unwrap().rows, 7);
    assert_eq!(read_table(&output).unwrap().nrows(), 7);
    let cols: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(columns_file(&output)).unwrap()).unwrap();
    assert_eq!(cols.len(), STEP_OUTPUT_COLS);
}
