//! Regression and classification metrics.
//!
//! R² follows scikit-learn's `r2_score` exactly: per column `1 − SS_res/SS_tot`; a constant
//! true column scores 1.0 when predicted perfectly and 0.0 otherwise (`force_finite=True`);
//! `"uniform_average"` is the plain mean over columns.

use crate::{Error, Result};
use ndarray::ArrayView2;

fn check(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<()> {
    if y.dim() != p.dim() {
        return Err(Error::ShapeMismatch {
            what: "metric inputs (y_true vs y_pred)".into(),
            expected: vec![y.nrows(), y.ncols()],
            got: vec![p.nrows(), p.ncols()],
        });
    }
    if y.nrows() == 0 {
        return Err(Error::invalid("metric inputs rows", 0, "at least 1 row"));
    }
    Ok(())
}

/// Mean squared error per column.
pub fn mse_per_column(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<Vec<f64>> {
    check(y, p)?;
    let n = y.nrows() as f64;
    Ok((0..y.ncols())
        .map(|j| y.column(j).iter().zip(p.column(j)).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n)
        .collect())
}

/// Mean squared error over all entries.
pub fn mse(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<f64> {
    let v = mse_per_column(y, p)?;
    Ok(v.iter().sum::<f64>() / v.len().max(1) as f64)
}

/// Root of [`mse`].
pub fn rmse(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<f64> {
    Ok(mse(y, p)?.sqrt())
}

/// Mean absolute error over all entries.
pub fn mae(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<f64> {
    check(y, p)?;
    Ok(y.iter().zip(p.iter()).map(|(a, b)| (a - b).abs()).sum::<f64>() / y.len() as f64)
}

/// R² per column (scikit-learn `multioutput="raw_values"`).
pub fn r2_per_column(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<Vec<f64>> {
    check(y, p)?;
    let n = y.nrows() as f64;
    Ok((0..y.ncols())
        .map(|j| {
            let yc = y.column(j);
            let mean = yc.sum() / n;
            let ss_tot: f64 = yc.iter().map(|v| (v - mean).powi(2)).sum();
            let ss_res: f64 = yc.iter().zip(p.column(j)).map(|(a, b)| (a - b).powi(2)).sum();
            if ss_tot == 0.0 { if ss_res == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - ss_res / ss_tot }
        })
        .collect())
}

/// R² averaged uniformly over columns (scikit-learn's default).
pub fn r2(y: &ArrayView2<f64>, p: &ArrayView2<f64>) -> Result<f64> {
    let v = r2_per_column(y, p)?;
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

/// Confusion counts for binary labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
}

impl Confusion {
    /// Count from labels and predictions.
    pub fn from_labels(truth: &[bool], pred: &[bool]) -> Result<Self> {
        if truth.len() != pred.len() {
            return Err(Error::ShapeMismatch {
                what: "binary labels (truth vs prediction)".into(),
                expected: vec![truth.len()],
                got: vec![pred.len()],
            });
        }
        let mut c = Confusion::default();
        for (&t, &p) in truth.iter().zip(pred) {
            match (t, p) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        Ok(c)
    }

    fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 { 0.0 } else { a as f64 / b as f64 }
    }

    /// (tp + tn) / all.
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    /// tp / (tp + fp); 0 when nothing was predicted positive (scikit-learn's zero_division=0).
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    /// tp / (tp + fn), the true-positive rate; 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    /// fp / (fp + tn), the false-positive rate.
    pub fn false_positive_rate(&self) -> f64 {
        Self::ratio(self.fp, self.fp + self.tn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn r2_matches_hand_computation() {
        // Column 0: y = [3, -0.5, 2, 7], p = [2.5, 0, 2, 8]  (scikit-learn docs example):
        //   mean 2.875, SS_tot = 29.1875, SS_res = 0.25+0.25+0+1 = 1.5 → R² = 0.948608137...
        // Column 1: y = [1, 2, 3, 4], p = [1, 2, 3, 5]: SS_tot = 5, SS_res = 1 → 0.8.
        let y = array![[3.0, 1.0], [-0.5, 2.0], [2.0, 3.0], [7.0, 4.0]];
        let p = array![[2.5, 1.0], [0.0, 2.0], [2.0, 3.0], [8.0, 5.0]];
        let r = r2_per_column(&y.view(), &p.view()).unwrap();
        assert!((r[0] - (1.0 - 1.5 / 29.1875)).abs() < 1e-15);
        assert!((r[0] - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert!((r[1] - 0.8).abs() < 1e-15);
        let avg = r2(&y.view(), &p.view()).unwrap();
        assert!((avg - (r[0] + 0.8) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn r2_constant_column_is_force_finite() {
        let y = array![[1.0], [1.0]];
        assert_eq!(r2(&y.view(), &y.view()).unwrap(), 1.0);
        assert_eq!(r2(&y.view(), &array![[1.0], [2.0]].view()).unwrap(), 0.0);
    }

    #[test]
    fn errors_and_simple_metrics() {
        let y = array![[0.0, 2.0]];
        let p = array![[1.0, 0.0]];
        assert_eq!(mse(&y.view(), &p.view()).unwrap(), 2.5);
        assert_eq!(mae(&y.view(), &p.view()).unwrap(), 1.5);
        assert!((rmse(&y.view(), &p.view()).unwrap() - 2.5f64.sqrt()).abs() < 1e-15);
        assert!(mse(&y.view(), &array![[1.0]].view()).is_err());
    }

    #[test]
    fn binary_metrics() {
        let t = [true, true, false, false, true];
        let p = [true, false, true, false, true];
        let c = Confusion::from_labels(&t, &p).unwrap();
        assert_eq!(c, Confusion { tp: 2, fp: 1, tn: 1, fn_: 1 });
        assert!((c.accuracy() - 0.6).abs() < 1e-15);
        assert!((c.precision() - 2.0 / 3.0).abs() < 1e-15);
        assert!((c.recall() - 2.0 / 3.0).abs() < 1e-15);
        assert!((c.false_positive_rate() - 0.5).abs() < 1e-15);
        assert!(Confusion::from_labels(&t, &p[..2]).is_err());
    }
}
