//! Outputs: raw data (npy + JSON), legacy-VTK structured grids for ParaView, and figures (contour
//! with trajectory, 3-D surface, 1-D line, spectral density) drawn with `gradlab_core::plot`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gradlab_core::plot::{HeatMap, LinePlot, Mark, Surface3d};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::surface::Surface;
use gradlab_core::io::{read_json, write_json, write_npy_1d, write_npy_2d};

#[derive(Serialize, Deserialize)]
struct SurfaceJson {
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Row-major losses, `null` where not finite.
    loss: Vec<Option<f64>>,
}

/// Writes `<stem>.npy` (`ny × nx` losses, NaN where not finite), `<stem>_x.npy`, `<stem>_y.npy`
/// and `<stem>.json` (same data, `null` for NaN) into `dir`. Returns the paths.
pub fn save_surface(dir: &Path, stem: &str, s: &Surface) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths = [
        dir.join(format!("{stem}.npy")),
        dir.join(format!("{stem}_x.npy")),
        dir.join(format!("{stem}_y.npy")),
        dir.join(format!("{stem}.json")),
    ];
    write_npy_2d(&paths[0], s.ys.len(), s.xs.len(), &s.loss)?;
    write_npy_1d(&paths[1], &s.xs)?;
    write_npy_1d(&paths[2], &s.ys)?;
    let js = SurfaceJson {
        xs: s.xs.clone(),
        ys: s.ys.clone(),
        loss: s.loss.iter().map(|v| v.is_finite().then_some(*v)).collect(),
    };
    write_json(&paths[3], &js)?;
    Ok(paths.to_vec())
}

/// Reads a surface written by [`save_surface`] (from its JSON).
pub fn load_surface(dir: &Path, stem: &str) -> Result<Surface> {
    let path = dir.join(format!("{stem}.json"));
    let js: SurfaceJson = read_json(&path)?;
    if js.loss.len() != js.xs.len() * js.ys.len() {
        return Err(Error::Mismatch {
            path,
            reason: format!("{} losses for a {}×{} grid", js.loss.len(), js.xs.len(), js.ys.len()),
        });
    }
    Ok(Surface { xs: js.xs, ys: js.ys, loss: js.loss.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect() })
}

/// Writes the surface as a legacy-VTK (ASCII) `STRUCTURED_GRID` with points `(a, b, z)`, where
/// `z = z_scale · loss` (non-finite losses are placed at the largest finite loss and flagged by
/// the `valid` point field), plus the point scalars `loss`, `log10_loss` and `valid`. Opens in
/// ParaView as is ("Warp By Scalar" is not needed: the height is already the loss).
pub fn write_vtk(path: &Path, s: &Surface, z_scale: f64) -> Result<()> {
    let (nx, ny) = (s.xs.len(), s.ys.len());
    let top = s.loss.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    let top = if top.is_finite() { top } else { 0.0 };
    let mut out = String::with_capacity(64 * nx * ny);
    let _ = writeln!(out, "# vtk DataFile Version 3.0\ngradlab-landscape loss surface\nASCII\nDATASET STRUCTURED_GRID");
    let _ = writeln!(out, "DIMENSIONS {nx} {ny} 1\nPOINTS {} double", nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let l = s.at(i, j);
            let z = if l.is_finite() { l } else { top };
            let _ = writeln!(out, "{:e} {:e} {:e}", s.xs[i], s.ys[j], z_scale * z);
        }
    }
    let _ = writeln!(out, "POINT_DATA {}", nx * ny);
    type Field = (&'static str, Box<dyn Fn(f64) -> f64>);
    let fields: [Field; 3] = [
        ("loss", Box::new(move |l: f64| if l.is_finite() { l } else { top })),
        (
            "log10_loss",
            Box::new(move |l: f64| {
                if l.is_finite() && l > 0.0 {
                    l.log10()
                } else if top > 0.0 {
                    top.log10()
                } else {
                    0.0
                }
            }),
        ),
        ("valid", Box::new(|l: f64| if l.is_finite() { 1.0 } else { 0.0 })),
    ];
    for (name, f) in &fields {
        let _ = writeln!(out, "SCALARS {name} double 1\nLOOKUP_TABLE default");
        for l in &s.loss {
            let _ = writeln!(out, "{:e}", f(*l));
        }
    }
    Ok(gradlab_core::io::write_text(path, &out)?)
}

/// Filled-contour plot of a 2-D surface (log colour scale when `log_z`) with an optional
/// projected trajectory overlaid and the centre marked. Writes `<stem>.png` and `<stem>.svg`.
pub fn plot_contour(
    stem: &Path,
    title: &str,
    s: &Surface,
    axis_labels: (&str, &str),
    trajectory: Option<&[(f64, f64)]>,
    log_z: bool,
) -> Result<Vec<PathBuf>> {
    let mut hm = HeatMap::new(title, s.xs.clone(), s.ys.clone(), s.rows())
        .x_label(axis_labels.0)
        .y_label(axis_labels.1)
        .z_label(if log_z { "loss (log colour scale)" } else { "loss" })
        .contour_levels(24)
        .log_z(log_z)
        .marker("centre", (0.0, 0.0));
    if let Some(t) = trajectory {
        hm = hm.path("training trajectory (projected)", t.to_vec());
    }
    Ok(hm.save(stem)?)
}

/// 3-D surface plot (z = loss, or log10 loss when `log_z`) with an optional path on it.
pub fn plot_surface3d(
    stem: &Path,
    title: &str,
    s: &Surface,
    axis_labels: (&str, &str),
    path: Option<&[(f64, f64, f64)]>,
    log_z: bool,
) -> Result<Vec<PathBuf>> {
    let tz = |v: f64| {
        if log_z { if v > 0.0 { v.log10() } else { f64::NAN } } else { v }
    };
    let rows: Vec<Vec<f64>> = s.rows().into_iter().map(|r| r.into_iter().map(tz).collect()).collect();
    let mut p = Surface3d::new(title, s.xs.clone(), s.ys.clone(), rows).labels(
        axis_labels.0,
        axis_labels.1,
        if log_z { "log10 loss" } else { "loss" },
    );
    if let Some(pts) = path {
        p = p.path(pts.iter().map(|(a, b, l)| (*a, *b, tz(*l))).collect());
    }
    Ok(p.save(stem)?)
}

/// Loss along one or more lines (`(name, xs, losses)`), log y axis when `log_y`.
pub fn plot_lines(
    stem: &Path,
    title: &str,
    x_label: &str,
    lines: &[(&str, &[f64], &[f64])],
    log_y: bool,
) -> Result<Vec<PathBuf>> {
    let mut p = LinePlot::new(title).x_label(x_label).y_label("loss").log_y(log_y);
    for (name, xs, ys) in lines {
        let pts = xs.iter().zip(ys.iter()).filter(|(_, y)| y.is_finite()).map(|(x, y)| (*x, *y)).collect();
        p = p.series(name, pts, Mark::LinePoints);
    }
    Ok(p.save(stem)?)
}

/// Spectral density (from SLQ) with the Lanczos extreme eigenvalues marked as points.
pub fn plot_density(
    stem: &Path,
    title: &str,
    grid: &[f64],
    density: &[f64],
    eigenvalues: &[f64],
) -> Result<Vec<PathBuf>> {
    let floor = 1e-8;
    let pts: Vec<(f64, f64)> = grid.iter().zip(density).map(|(x, d)| (*x, d.max(floor))).collect();
    let mut p =
        LinePlot::new(title).x_label("eigenvalue").y_label("density (log scale)").log_y(true).line("SLQ density", pts);
    if !eigenvalues.is_empty() {
        let top = density.iter().copied().fold(floor, f64::max);
        p = p.series("Lanczos extreme eigenvalues", eigenvalues.iter().map(|e| (*e, top)).collect(), Mark::Points);
    }
    Ok(p.save(stem)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface() -> Surface {
        let xs = vec![-1.0, 0.0, 1.0, 2.0];
        let ys = vec![-0.5, 0.5, 1.5];
        let mut loss: Vec<f64> = (0..12).map(|k| 0.1 + (k as f64 - 5.0).powi(2)).collect();
        loss[7] = f64::NAN;
        Surface { xs, ys, loss }
    }

    #[test]
    fn raw_data_round_trips() {
        let s = surface();
        let dir = tempfile::tempdir().unwrap();
        save_surface(dir.path(), "plane", &s).unwrap();
        let back = load_surface(dir.path(), "plane").unwrap();
        assert_eq!(back.xs, s.xs);
        assert_eq!(back.ys, s.ys);
        for (a, b) in back.loss.iter().zip(&s.loss) {
            assert!(a == b || (a.is_nan() && b.is_nan()));
        }
        let (r, c, data) = gradlab_core::io::read_npy_2d(&dir.path().join("plane.npy")).unwrap();
        assert_eq!((r, c), (3, 4));
        assert_eq!(data[3], s.loss[3]);
        assert!(data[7].is_nan());
    }

    /// Parses the VTK file back with a minimal reader of the legacy format.
    #[test]
    fn vtk_structured_grid_is_well_formed() {
        let s = surface();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plane.vtk");
        write_vtk(&path, &s, 2.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# vtk DataFile Version 3.0");
        assert_eq!(lines[3], "DATASET STRUCTURED_GRID");
        assert_eq!(lines[4], "DIMENSIONS 4 3 1");
        assert_eq!(lines[5], "POINTS 12 double");
        let pts: Vec<Vec<f64>> =
            lines[6..18].iter().map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect()).collect();
        // x fastest, then y; z = 2 · loss
        assert_eq!(pts[5][0], 0.0);
        assert_eq!(pts[5][1], 0.5);
        assert!((pts[5][2] - 2.0 * s.loss[5]).abs() < 1e-12);
        let top = s.loss.iter().copied().filter(|v| v.is_finite()).fold(f64::MIN, f64::max);
        assert!((pts[7][2] - 2.0 * top).abs() < 1e-9 * top);
        assert_eq!(lines[18], "POINT_DATA 12");
        let valid_at = lines.iter().position(|l| l.starts_with("SCALARS valid")).unwrap();
        let valid: Vec<f64> = lines[valid_at + 2..valid_at + 14].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(valid.iter().filter(|v| **v == 0.0).count(), 1);
        assert_eq!(valid[7], 0.0);
        assert_eq!(lines.len(), 19 + 3 * 14);
    }

    #[test]
    fn figures_are_written() {
        let s = surface();
        let dir = tempfile::tempdir().unwrap();
        let traj = [(1.5, 1.2), (0.5, 0.3), (0.0, 0.0)];
        let f = plot_contour(&dir.path().join("contour"), "test", &s, ("a", "b"), Some(&traj), true).unwrap();
        let f3 =
            plot_surface3d(&dir.path().join("surf"), "test", &s, ("a", "b"), Some(&[(0.0, 0.0, 1.0)]), true).unwrap();
        let fl = plot_lines(&dir.path().join("line"), "test", "t", &[("l", &s.xs, &s.loss[..4])], false).unwrap();
        let fd = plot_density(&dir.path().join("dens"), "test", &[0.0, 1.0, 2.0], &[0.1, 0.5, 0.0], &[2.0]).unwrap();
        for p in f.iter().chain(&f3).chain(&fl).chain(&fd) {
            assert!(std::fs::metadata(p).unwrap().len() > 1000, "{p:?}");
        }
    }
}
