//! Figures on plotters with an embedded font (DejaVu Sans, shipped in `assets/`): no system font
//! libraries are needed. Every figure is written as PNG and SVG next to each other, always with a
//! title and axis labels.
//!
//! * [`LinePlot`]: several series (lines, points, shaded bands such as mean ± std), log axes.
//! * [`ScatterPlot`]: predicted vs true with the identity line.
//! * [`HeatMap`]: a grid as a heat map or filled contour (quantised levels) with a colour bar and
//!   overlaid paths (e.g. a training trajectory) and markers.
//! * [`Surface3d`]: a 3-D surface with an optional path on it.
//! * [`Histogram`]: one or more histograms, linear or log bins, linear or log counts.
//!
//! Log axes are drawn on log10-transformed coordinates with labels showing the original values.

use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: Once = Once::new();
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn ensure_font() {
    FONT.call_once(|| {
        // Registration fails only for malformed font data, which is a build-time constant.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, FONT_BYTES);
    });
}

const SIZE: (u32, u32) = (960, 720);

fn perr<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Plot { what: what.to_string(), message: format!("{e:?}") }
}

/// The colours of successive series (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Viridis colour for `t` in [0, 1].
pub fn viridis(t: f64) -> RGBColor {
    const A: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (A.len() - 1) as f64;
    let i = (x.floor() as usize).min(A.len() - 2);
    let f = x - i as f64;
    let l = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    RGBColor(l(A[i].0, A[i + 1].0), l(A[i].1, A[i + 1].1), l(A[i].2, A[i + 1].2))
}

macro_rules! both {
    ($stem:expr, |$root:ident| $body:expr) => {{
        ensure_font();
        if let Some(parent) = $stem.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
        }
        let png = $stem.with_extension("png");
        let svg = $stem.with_extension("svg");
        {
            let $root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            $root.fill(&WHITE).map_err(perr("png"))?;
            $body;
            $root.present().map_err(perr("png"))?;
        }
        {
            let $root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            $root.fill(&WHITE).map_err(perr("svg"))?;
            $body;
            $root.present().map_err(perr("svg"))?;
        }
        Ok(vec![png, svg])
    }};
}

fn tr(v: f64, log: bool) -> Option<f64> {
    if !v.is_finite() {
        return None;
    }
    if log { if v > 0.0 { Some(v.log10()) } else { None } } else { Some(v) }
}

/// Number of axis labels: on a log axis spanning at least one decade, one label per decade so
/// that plotters' "nice" tick search lands on powers of ten; otherwise plotters' default (10).
fn n_labels(lo: f64, hi: f64, log: bool) -> usize {
    let span = hi - lo;
    if log && span >= 1.0 { (span.floor() as usize + 1).clamp(2, 10) } else { 10 }
}

fn label(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    let a = x.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-2..1e4).contains(&a) {
        format!("{x:.1e}")
    } else if a >= 100.0 || (x.fract() == 0.0 && a < 100.0) {
        format!("{x:.0}")
    } else {
        format!("{x:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn range_of(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    if hi - lo < 1e-12 * (1.0 + lo.abs()) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - d, hi + d));
    }
    let pad = 0.03 * (hi - lo);
    Some((lo - pad, hi + pad))
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Points,
    LinePoints,
    Dashed,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    pts: Vec<(f64, f64)>,
    mark: Mark,
}

/// A named band of `(x, lo, hi)` points.
type Band = (String, Vec<(f64, f64, f64)>);

/// A line plot with several series, optional bands, log axes.
#[derive(Debug, Clone)]
pub struct LinePlot {
    title: String,
    xl: String,
    yl: String,
    series: Vec<Series>,
    bands: Vec<Band>,
    log_x: bool,
    log_y: bool,
}

impl LinePlot {
    /// A plot with a title (axis labels default to `x` / `y`; set them).
    pub fn new(title: &str) -> Self {
        LinePlot {
            title: title.into(),
            xl: "x".into(),
            yl: "y".into(),
            series: vec![],
            bands: vec![],
            log_x: false,
            log_y: false,
        }
    }
    #[must_use]
    pub fn x_label(mut self, l: &str) -> Self {
        self.xl = l.into();
        self
    }
    #[must_use]
    pub fn y_label(mut self, l: &str) -> Self {
        self.yl = l.into();
        self
    }
    #[must_use]
    pub fn log_x(mut self, on: bool) -> Self {
        self.log_x = on;
        self
    }
    #[must_use]
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }
    /// Add a series drawn as `mark`.
    #[must_use]
    pub fn series(mut self, name: &str, pts: Vec<(f64, f64)>, mark: Mark) -> Self {
        self.series.push(Series { name: name.into(), pts, mark });
        self
    }
    /// Add a line series.
    #[must_use]
    pub fn line(self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.series(name, pts, Mark::Line)
    }
    /// Add a shaded band `(x, lo, hi)`, drawn in the colour of the series with the same index.
    #[must_use]
    pub fn band(mut self, name: &str, pts: Vec<(f64, f64, f64)>) -> Self {
        self.bands.push((name.into(), pts));
        self
    }

    /// Draw to `<stem>.png` and `<stem>.svg`.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let (lx, ly) = (self.log_x, self.log_y);
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.pts.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.1.iter().map(|p| p.0)));
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.pts.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.1.iter().flat_map(|p| [p.1, p.2])));
        let xr = range_of(xs.filter_map(|v| tr(v, lx))).unwrap_or((0.0, 1.0));
        let yr = range_of(ys.filter_map(|v| tr(v, ly))).unwrap_or((0.0, 1.0));
        both!(stem, |root| self.draw(&root, xr, yr)?)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, xr: (f64, f64), yr: (f64, f64)) -> Result<()> {
        let (lx, ly) = (self.log_x, self.log_y);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 28))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(perr(&self.title))?;
        chart
            .configure_mesh()
            .x_desc(self.xl.as_str())
            .y_desc(self.yl.as_str())
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 16))
            .x_labels(n_labels(xr.0, xr.1, lx))
            .y_labels(n_labels(yr.0, yr.1, ly))
            .x_label_formatter(&|v| label(*v, lx))
            .y_label_formatter(&|v| label(*v, ly))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(perr(&self.title))?;
        for (i, (_, b)) in self.bands.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let mut poly: Vec<(f64, f64)> = b.iter().filter_map(|p| Some((tr(p.0, lx)?, tr(p.2, ly)?))).collect();
            poly.extend(b.iter().rev().filter_map(|p| Some((tr(p.0, lx)?, tr(p.1, ly)?))));
            chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2).filled()))).map_err(perr(&self.title))?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s.pts.iter().filter_map(|p| Some((tr(p.0, lx)?, tr(p.1, ly)?))).collect();
            let style = c.stroke_width(2);
            match s.mark {
                Mark::Line | Mark::LinePoints => {
                    let ann = chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(perr(&self.title))?;
                    ann.label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                    if s.mark == Mark::LinePoints {
                        chart
                            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                            .map_err(perr(&self.title))?;
                    }
                }
                Mark::Dashed => {
                    let ann = chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                        .map_err(perr(&self.title))?;
                    ann.label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                }
                Mark::Points => {
                    let ann = chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(perr(&self.title))?;
                    ann.label(s.name.as_str()).legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
                }
            }
        }
        if self.series.len() > 1 || self.series.iter().any(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(perr(&self.title))?;
        }
        Ok(())
    }
}

/// Predicted vs true scatter with the identity line.
#[derive(Debug, Clone)]
pub struct ScatterPlot {
    title: String,
    xl: String,
    yl: String,
    pts: Vec<(f64, f64)>,
    identity: bool,
    log: bool,
}

impl ScatterPlot {
    /// Points `(true, predicted)`.
    pub fn new(title: &str, pts: Vec<(f64, f64)>) -> Self {
        ScatterPlot { title: title.into(), xl: "true".into(), yl: "predicted".into(), pts, identity: true, log: false }
    }
    #[must_use]
    pub fn x_label(mut self, l: &str) -> Self {
        self.xl = l.into();
        self
    }
    #[must_use]
    pub fn y_label(mut self, l: &str) -> Self {
        self.yl = l.into();
        self
    }
    /// Draw the identity line y = x (default on).
    #[must_use]
    pub fn identity(mut self, on: bool) -> Self {
        self.identity = on;
        self
    }
    /// Log-log axes (non-positive points dropped).
    #[must_use]
    pub fn log(mut self, on: bool) -> Self {
        self.log = on;
        self
    }

    /// Draw to `<stem>.png` and `<stem>.svg`.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let lg = self.log;
        let pts: Vec<(f64, f64)> = self.pts.iter().filter_map(|p| Some((tr(p.0, lg)?, tr(p.1, lg)?))).collect();
        let r = range_of(pts.iter().flat_map(|p| [p.0, p.1])).unwrap_or((0.0, 1.0));
        both!(stem, |root| {
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 28))
                .margin(16)
                .x_label_area_size(56)
                .y_label_area_size(80)
                .build_cartesian_2d(r.0..r.1, r.0..r.1)
                .map_err(perr(&self.title))?;
            chart
                .configure_mesh()
                .x_desc(self.xl.as_str())
                .y_desc(self.yl.as_str())
                .axis_desc_style(("sans-serif", 20))
                .label_style(("sans-serif", 16))
                .x_labels(n_labels(r.0, r.1, lg))
                .y_labels(n_labels(r.0, r.1, lg))
                .x_label_formatter(&|v| label(*v, lg))
                .y_label_formatter(&|v| label(*v, lg))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(perr(&self.title))?;
            let alpha = if pts.len() > 5000 {
                0.15
            } else if pts.len() > 500 {
                0.4
            } else {
                0.8
            };
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 2, PALETTE[0].mix(alpha).filled())))
                .map_err(perr(&self.title))?;
            if self.identity {
                chart
                    .draw_series(LineSeries::new(vec![(r.0, r.0), (r.1, r.1)], PALETTE[3].stroke_width(2)))
                    .map_err(perr(&self.title))?
                    .label("y = x")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[3].stroke_width(2)));
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 16))
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()
                    .map_err(perr(&self.title))?;
            }
        })
    }
}

/// A grid of values as a heat map or filled contour, with a colour bar and overlays.
#[derive(Debug, Clone)]
pub struct HeatMap {
    title: String,
    xl: String,
    yl: String,
    zl: String,
    xs: Vec<f64>,
    ys: Vec<f64>,
    z: Vec<Vec<f64>>,
    levels: Option<usize>,
    log_z: bool,
    paths: Vec<(String, Vec<(f64, f64)>)>,
    markers: Vec<(String, (f64, f64))>,
}

impl HeatMap {
    /// `z[j][i]` is the value at `(xs[i], ys[j])`. Shapes are checked at `save`.
    pub fn new(title: &str, xs: Vec<f64>, ys: Vec<f64>, z: Vec<Vec<f64>>) -> Self {
        HeatMap {
            title: title.into(),
            xl: "x".into(),
            yl: "y".into(),
            zl: "value".into(),
            xs,
            ys,
            z,
            levels: None,
            log_z: false,
            paths: vec![],
            markers: vec![],
        }
    }
    #[must_use]
    pub fn x_label(mut self, l: &str) -> Self {
        self.xl = l.into();
        self
    }
    #[must_use]
    pub fn y_label(mut self, l: &str) -> Self {
        self.yl = l.into();
        self
    }
    /// Label of the colour bar.
    #[must_use]
    pub fn z_label(mut self, l: &str) -> Self {
        self.zl = l.into();
        self
    }
    /// Quantise into `n` filled contour levels.
    #[must_use]
    pub fn contour_levels(mut self, n: usize) -> Self {
        self.levels = Some(n.max(2));
        self
    }
    /// Colour by log10 of the value.
    #[must_use]
    pub fn log_z(mut self, on: bool) -> Self {
        self.log_z = on;
        self
    }
    /// Overlay a path (e.g. a projected training trajectory).
    #[must_use]
    pub fn path(mut self, name: &str, pts: Vec<(f64, f64)>) -> Self {
        self.paths.push((name.into(), pts));
        self
    }
    /// Overlay a labelled marker.
    #[must_use]
    pub fn marker(mut self, name: &str, at: (f64, f64)) -> Self {
        self.markers.push((name.into(), at));
        self
    }

    fn check(&self) -> Result<()> {
        if self.xs.len() < 2 || self.ys.len() < 2 {
            return Err(Error::invalid(
                "heat map grid",
                format!("{}x{}", self.xs.len(), self.ys.len()),
                "at least 2x2 points",
            ));
        }
        if self.z.len() != self.ys.len() || self.z.iter().any(|r| r.len() != self.xs.len()) {
            return Err(Error::ShapeMismatch {
                what: format!("heat map `{}` values", self.title),
                expected: vec![self.ys.len(), self.xs.len()],
                got: vec![self.z.len(), self.z.first().map_or(0, |r| r.len())],
            });
        }
        Ok(())
    }

    /// Draw to `<stem>.png` and `<stem>.svg`.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        self.check()?;
        both!(stem, |root| self.draw(&root)?)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let lz = self.log_z;
        let vals: Vec<f64> = self.z.iter().flatten().filter_map(|&v| tr(v, lz)).collect();
        let (zlo, zhi) = {
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() && hi > lo {
                (lo, hi)
            } else if lo.is_finite() {
                (lo - 0.5, lo + 0.5)
            } else {
                (0.0, 1.0)
            }
        };
        let norm = |v: f64| -> Option<f64> {
            let t = (tr(v, lz)? - zlo) / (zhi - zlo);
            Some(match self.levels {
                Some(n) => ((t * n as f64).floor().min(n as f64 - 1.0) + 0.5) / n as f64,
                None => t,
            })
        };
        let (main, bar) = root.split_horizontally(SIZE.0 - 130);
        let half = |v: &[f64], i: usize| -> (f64, f64) {
            let lo = if i == 0 { v[0] - (v[1] - v[0]) / 2.0 } else { (v[i - 1] + v[i]) / 2.0 };
            let hi = if i + 1 == v.len() { v[i] + (v[i] - v[i - 1]) / 2.0 } else { (v[i] + v[i + 1]) / 2.0 };
            (lo, hi)
        };
        let xr = (half(&self.xs, 0).0, half(&self.xs, self.xs.len() - 1).1);
        let yr = (half(&self.ys, 0).0, half(&self.ys, self.ys.len() - 1).1);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, ("sans-serif", 28))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d(xr.0.min(xr.1)..xr.0.max(xr.1), yr.0.min(yr.1)..yr.0.max(yr.1))
            .map_err(perr(&self.title))?;
        chart
            .configure_mesh()
            .x_desc(self.xl.as_str())
            .y_desc(self.yl.as_str())
            .axis_desc_style(("sans-serif", 20))
            .label_style(("sans-serif", 16))
            .x_label_formatter(&|v| label(*v, false))
            .y_label_formatter(&|v| label(*v, false))
            .disable_mesh()
            .draw()
            .map_err(perr(&self.title))?;
        let mut cells = Vec::with_capacity(self.xs.len() * self.ys.len());
        for (j, row) in self.z.iter().enumerate() {
            let (y0, y1) = half(&self.ys, j);
            for (i, &v) in row.iter().enumerate() {
                let (x0, x1) = half(&self.xs, i);
                let c = match norm(v) {
                    Some(t) => viridis(t).filled(),
                    None => RGBColor(200, 200, 200).filled(),
                };
                cells.push(Rectangle::new([(x0, y0), (x1, y1)], c));
            }
        }
        chart.draw_series(cells).map_err(perr(&self.title))?;
        for (k, (name, p)) in self.paths.iter().enumerate() {
            let c = if k == 0 { RED } else { PALETTE[(k + 1) % PALETTE.len()] };
            chart
                .draw_series(LineSeries::new(p.clone(), c.stroke_width(2)))
                .map_err(perr(&self.title))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(p.iter().map(|&q| Circle::new(q, 3, c.filled()))).map_err(perr(&self.title))?;
        }
        for (name, at) in &self.markers {
            chart.draw_series(std::iter::once(Cross::new(*at, 8, WHITE.stroke_width(3)))).map_err(perr(&self.title))?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(*at)
                        + Text::new(name.clone(), (10, -20), ("sans-serif", 16).into_font().color(&WHITE)),
                ))
                .map_err(perr(&self.title))?;
        }
        if !self.paths.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 16))
                .draw()
                .map_err(perr(&self.title))?;
        }
        // Colour bar.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(72)
            .margin_right(8)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, zlo..zhi)
            .map_err(perr("colour bar"))?;
        cb.configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc(self.zl.as_str())
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .y_label_formatter(&|v| label(*v, lz))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(perr("colour bar"))?;
        let n = 100;
        cb.draw_series((0..n).map(|k| {
            let a = zlo + (zhi - zlo) * k as f64 / n as f64;
            let b = zlo + (zhi - zlo) * (k + 1) as f64 / n as f64;
            let t = (k as f64 + 0.5) / n as f64;
            let t = match self.levels {
                Some(m) => ((t * m as f64).floor() + 0.5) / m as f64,
                None => t,
            };
            Rectangle::new([(0.0, a), (1.0, b)], viridis(t).filled())
        }))
        .map_err(perr("colour bar"))?;
        Ok(())
    }
}

/// A 3-D surface `z(x, y)` with an optional path drawn on it.
#[derive(Debug, Clone)]
pub struct Surface3d {
    title: String,
    xl: String,
    yl: String,
    zl: String,
    xs: Vec<f64>,
    ys: Vec<f64>,
    z: Vec<Vec<f64>>,
    path: Vec<(f64, f64, f64)>,
    yaw: f64,
    pitch: f64,
}

impl Surface3d {
    /// `z[j][i]` is the value at `(xs[i], ys[j])`.
    pub fn new(title: &str, xs: Vec<f64>, ys: Vec<f64>, z: Vec<Vec<f64>>) -> Self {
        Surface3d {
            title: title.into(),
            xl: "x".into(),
            yl: "y".into(),
            zl: "z".into(),
            xs,
            ys,
            z,
            path: vec![],
            yaw: 0.7,
            pitch: 0.45,
        }
    }
    #[must_use]
    pub fn labels(mut self, x: &str, y: &str, z: &str) -> Self {
        self.xl = x.into();
        self.yl = y.into();
        self.zl = z.into();
        self
    }
    /// A path `(x, y, z)` drawn over the surface.
    #[must_use]
    pub fn path(mut self, pts: Vec<(f64, f64, f64)>) -> Self {
        self.path = pts;
        self
    }
    /// Viewing angles in radians.
    #[must_use]
    pub fn view(mut self, yaw: f64, pitch: f64) -> Self {
        self.yaw = yaw;
        self.pitch = pitch;
        self
    }

    /// Draw to `<stem>.png` and `<stem>.svg`.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        HeatMap::new(&self.title, self.xs.clone(), self.ys.clone(), self.z.clone()).check()?;
        both!(stem, |root| self.draw(&root)?)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let zs: Vec<f64> = self.z.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        let (zlo, zhi) = range_of(zs.iter().copied().chain(self.path.iter().map(|p| p.2))).unwrap_or((0.0, 1.0));
        let (xlo, xhi) = range_of(self.xs.iter().copied()).unwrap_or((0.0, 1.0));
        let (ylo, yhi) = range_of(self.ys.iter().copied()).unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 28))
            .margin(24)
            .build_cartesian_3d(xlo..xhi, zlo..zhi, ylo..yhi)
            .map_err(perr(&self.title))?;
        chart.with_projection(|mut p| {
            p.yaw = self.yaw;
            p.pitch = self.pitch;
            p.scale = 0.8;
            p.into_matrix()
        });
        chart
            .configure_axes()
            .label_style(("sans-serif", 14))
            .x_formatter(&|v| label(*v, false))
            .y_formatter(&|v| label(*v, false))
            .z_formatter(&|v| label(*v, false))
            .draw()
            .map_err(perr(&self.title))?;
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let mut quads = Vec::new();
        // Paint from the back to the front for a correct painter's-algorithm image.
        for j in (0..ny - 1).rev() {
            for i in 0..nx - 1 {
                let c = [self.z[j][i], self.z[j][i + 1], self.z[j + 1][i + 1], self.z[j + 1][i]];
                if c.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let mean = c.iter().sum::<f64>() / 4.0;
                let col = viridis((mean - zlo) / (zhi - zlo));
                quads.push(Polygon::new(
                    vec![
                        (self.xs[i], c[0], self.ys[j]),
                        (self.xs[i + 1], c[1], self.ys[j]),
                        (self.xs[i + 1], c[2], self.ys[j + 1]),
                        (self.xs[i], c[3], self.ys[j + 1]),
                    ],
                    col.mix(0.9).filled(),
                ));
            }
        }
        chart.draw_series(quads).map_err(perr(&self.title))?;
        if !self.path.is_empty() {
            let p: Vec<(f64, f64, f64)> = self.path.iter().map(|&(x, y, z)| (x, z, y)).collect();
            chart.draw_series(LineSeries::new(p, RED.stroke_width(3))).map_err(perr(&self.title))?;
        }
        // Axis names (3-D charts have no axis descriptions in plotters), at the middle of the
        // edges that carry the tick labels in the default view.
        let style = ("sans-serif", 18).into_font().color(&BLACK);
        let (mx, my) = ((xlo + xhi) / 2.0, (ylo + yhi) / 2.0);
        chart
            .draw_series([
                Text::new(self.xl.clone(), (mx, zlo, yhi), style.clone()),
                Text::new(self.yl.clone(), (xhi, zlo, my), style.clone()),
                Text::new(self.zl.clone(), (xlo, zhi, ylo), style),
            ])
            .map_err(perr(&self.title))?;
        Ok(())
    }
}

/// One or more histograms.
#[derive(Debug, Clone)]
pub struct Histogram {
    title: String,
    xl: String,
    yl: String,
    data: Vec<(String, Vec<f64>)>,
    bins: usize,
    log_x: bool,
    log_y: bool,
}

impl Histogram {
    /// A histogram of `values` (non-finite values are skipped).
    pub fn new(title: &str) -> Self {
        Histogram {
            title: title.into(),
            xl: "value".into(),
            yl: "count".into(),
            data: vec![],
            bins: 50,
            log_x: false,
            log_y: false,
        }
    }
    #[must_use]
    pub fn x_label(mut self, l: &str) -> Self {
        self.xl = l.into();
        self
    }
    #[must_use]
    pub fn y_label(mut self, l: &str) -> Self {
        self.yl = l.into();
        self
    }
    #[must_use]
    pub fn bins(mut self, n: usize) -> Self {
        self.bins = n.max(1);
        self
    }
    /// Logarithmic bins (non-positive values skipped).
    #[must_use]
    pub fn log_x(mut self, on: bool) -> Self {
        self.log_x = on;
        self
    }
    /// Logarithmic counts.
    #[must_use]
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }
    /// Add a data set.
    #[must_use]
    pub fn data(mut self, name: &str, values: Vec<f64>) -> Self {
        self.data.push((name.into(), values));
        self
    }

    /// Bin edges and counts per data set.
    pub fn counts(&self) -> (Vec<f64>, Vec<Vec<usize>>) {
        let lx = self.log_x;
        let all: Vec<f64> = self.data.iter().flat_map(|d| d.1.iter().filter_map(|&v| tr(v, lx))).collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        let w = (hi - lo) / self.bins as f64;
        let edges: Vec<f64> = (0..=self.bins).map(|k| lo + w * k as f64).collect();
        let counts = self
            .data
            .iter()
            .map(|d| {
                let mut c = vec![0usize; self.bins];
                for v in d.1.iter().filter_map(|&v| tr(v, lx)) {
                    let k = (((v - lo) / w) as usize).min(self.bins - 1);
                    c[k] += 1;
                }
                c
            })
            .collect();
        (edges, counts)
    }

    /// Draw to `<stem>.png` and `<stem>.svg`.
    pub fn save(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let (edges, counts) = self.counts();
        let ly = self.log_y;
        let cy = |c: usize| if ly { (c as f64).max(0.5).log10() } else { c as f64 };
        let ymax = counts.iter().flatten().map(|&c| cy(c)).fold(if ly { 0.0 } else { 1.0 }, f64::max);
        let ylo = if ly { 0.5f64.log10() } else { 0.0 };
        let lx = self.log_x;
        both!(stem, |root| {
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 28))
                .margin(16)
                .x_label_area_size(56)
                .y_label_area_size(80)
                .build_cartesian_2d(edges[0]..edges[edges.len() - 1], ylo..ymax * 1.05 + 1e-9)
                .map_err(perr(&self.title))?;
            chart
                .configure_mesh()
                .x_desc(self.xl.as_str())
                .y_desc(self.yl.as_str())
                .axis_desc_style(("sans-serif", 20))
                .label_style(("sans-serif", 16))
                .x_labels(n_labels(edges[0], edges[edges.len() - 1], lx))
                .y_labels(n_labels(ylo, ymax * 1.05, ly))
                .x_label_formatter(&|v| label(*v, lx))
                .y_label_formatter(&|v| label(*v, ly))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(perr(&self.title))?;
            let alpha = if counts.len() > 1 { 0.45 } else { 0.8 };
            for (k, c) in counts.iter().enumerate() {
                let col = PALETTE[k % PALETTE.len()];
                let rects =
                    c.iter().enumerate().filter(|(_, n)| **n > 0).map(|(b, &n)| {
                        Rectangle::new([(edges[b], ylo), (edges[b + 1], cy(n))], col.mix(alpha).filled())
                    });
                chart
                    .draw_series(rects)
                    .map_err(perr(&self.title))?
                    .label(self.data[k].0.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.mix(alpha).filled()));
            }
            if counts.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 16))
                    .draw()
                    .map_err(perr(&self.title))?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(p: &Path) -> (u32, u32) {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        (w, h)
    }

    fn svg_has_text(p: &Path, text: &str) {
        let s = std::fs::read_to_string(p).unwrap();
        assert!(s.contains(text), "{} lacks {text}", p.display());
    }

    #[test]
    fn all_plot_kinds_write_png_and_svg_with_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let pts: Vec<(f64, f64)> = (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect();
        let f = LinePlot::new("Loss curve")
            .x_label("epoch")
            .y_label("loss")
            .log_y(true)
            .line("train", pts.clone())
            .series("val", pts.iter().map(|p| (p.0, p.1 * 1.2)).collect(), Mark::Dashed)
            .band("band", pts.iter().map(|p| (p.0, p.1 * 0.9, p.1 * 1.1)).collect())
            .save(&d.join("line"))
            .unwrap();
        assert_eq!(png_size(&f[0]), SIZE);
        svg_has_text(&f[1], "Loss curve");
        svg_has_text(&f[1], "epoch");

        let f = ScatterPlot::new("Pred vs true", pts.clone()).save(&d.join("sc")).unwrap();
        svg_has_text(&f[1], "predicted");

        let xs: Vec<f64> = (0..21).map(|i| -1.0 + 0.1 * i as f64).collect();
        let z: Vec<Vec<f64>> = xs.iter().map(|y| xs.iter().map(|x| x * x + 2.0 * y * y).collect()).collect();
        let f = HeatMap::new("Surface", xs.clone(), xs.clone(), z.clone())
            .x_label("α")
            .y_label("β")
            .z_label("loss")
            .contour_levels(12)
            .path("trajectory", vec![(0.9, 0.9), (0.5, 0.3), (0.0, 0.0)])
            .marker("end", (0.0, 0.0))
            .save(&d.join("heat"))
            .unwrap();
        svg_has_text(&f[1], "loss");
        svg_has_text(&f[1], "trajectory");
        let f = Surface3d::new("3-D", xs.clone(), xs.clone(), z)
            .labels("α", "β", "loss")
            .path(vec![(0.9, 0.9, 2.43), (0.0, 0.0, 0.0)])
            .save(&d.join("s3"))
            .unwrap();
        assert!(f[0].exists());

        let h =
            Histogram::new("Hist").x_label("v").log_x(true).log_y(true).data("a", vec![1.0, 10.0, 100.0, -1.0]).bins(4);
        let (edges, counts) = h.counts();
        assert_eq!(edges.len(), 5);
        assert_eq!(counts[0].iter().sum::<usize>(), 3); // the negative value is skipped on a log axis
        h.save(&d.join("hist")).unwrap();
    }

    #[test]
    fn heat_map_shape_errors() {
        let e = HeatMap::new("x", vec![0.0, 1.0], vec![0.0, 1.0], vec![vec![1.0]])
            .save(Path::new("/tmp/never"))
            .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }));
    }

    #[test]
    fn log_axes_get_one_label_per_decade() {
        assert_eq!(n_labels(-2.1, 0.1, true), 3);
        assert_eq!(n_labels(-0.3, 0.2, true), 10);
        assert_eq!(n_labels(-30.0, 30.0, true), 10);
        assert_eq!(n_labels(-2.1, 0.1, false), 10);
    }

    #[test]
    fn viridis_endpoints() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }
}
