//! Search spaces: named float, log-float, integer and categorical parameters, encoded
//! into a unit cube for the Gaussian process.
//!
//! Encoding (one or more unit-cube coordinates per parameter):
//! - `float` on `[low, high]`: one coordinate, `(v - low) / (high - low)`;
//! - `log_float`: one coordinate, linear in `ln v`;
//! - `int` on `{low..=high}`: one coordinate on `[low - 0.5, high + 0.5]`, decoded by rounding;
//! - `categorical` with k choices: k coordinates (one-hot), decoded by arg-max.
//!
//! Decoding then re-encoding snaps a point to the canonical representative that the
//! objective actually sees; the optimiser trains its model on snapped points.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One parameter of a search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Param {
    /// Real value on `[low, high]`.
    Float { name: String, low: f64, high: f64 },
    /// Positive real value on `[low, high]`, searched on a log scale.
    LogFloat { name: String, low: f64, high: f64 },
    /// Integer value on `low..=high`.
    Int { name: String, low: i64, high: i64 },
    /// One of a list of named choices.
    Categorical { name: String, choices: Vec<String> },
}

impl Param {
    /// Parameter name.
    pub fn name(&self) -> &str {
        match self {
            Param::Float { name, .. }
            | Param::LogFloat { name, .. }
            | Param::Int { name, .. }
            | Param::Categorical { name, .. } => name,
        }
    }

    /// Number of unit-cube coordinates this parameter occupies.
    pub fn encoded_dim(&self) -> usize {
        match self {
            Param::Categorical { choices, .. } => choices.len(),
            _ => 1,
        }
    }

    fn validate(&self) -> Result<()> {
        let name = self.name();
        if name.is_empty() {
            return Err(Error::invalid("name", "\"\"", "a non-empty parameter name"));
        }
        let field = |f: &str| format!("{name}.{f}");
        let finite = |which: &str, value: f64| {
            if value.is_finite() { Ok(()) } else { Err(Error::invalid(field(which), value, "a finite number")) }
        };
        match self {
            Param::Float { low, high, .. } | Param::LogFloat { low, high, .. } => {
                finite("low", *low)?;
                finite("high", *high)?;
                if low >= high {
                    return Err(Error::invalid(field("high"), high, format!("> low = {low} (not an empty range)")));
                }
                if matches!(self, Param::LogFloat { .. }) && *low <= 0.0 {
                    return Err(Error::invalid(field("low"), low, "> 0 on a log scale"));
                }
            }
            Param::Int { low, high, .. } => {
                if low > high {
                    return Err(Error::invalid(field("high"), high, format!(">= low = {low} (not an empty range)")));
                }
            }
            Param::Categorical { choices, .. } => {
                if choices.is_empty() {
                    return Err(Error::invalid(field("choices"), "[]", "at least one choice"));
                }
                let mut seen = std::collections::BTreeSet::new();
                for c in choices {
                    if !seen.insert(c) {
                        return Err(Error::invalid(
                            field("choices"),
                            format!("{choices:?}"),
                            format!("distinct choices (`{c}` is there twice)"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A parameter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Integer (for `int` parameters).
    Int(i64),
    /// Real (for `float` and `log_float` parameters).
    Float(f64),
    /// Choice (for `categorical` parameters).
    Choice(String),
}

impl Value {
    /// The value as `f64` (integers converted), `None` for a choice.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Choice(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            // `{}` on f64 prints the shortest representation that round-trips.
            Value::Float(x) => write!(f, "{x}"),
            Value::Choice(s) => write!(f, "{s}"),
        }
    }
}

/// A point of the search space: one value per parameter, in the space's order.
pub type Point = Vec<Value>;

/// A validated search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SpaceSpec", into = "SpaceSpec")]
pub struct Space {
    params: Vec<Param>,
    offsets: Vec<usize>,
    dim: usize,
}

/// Serialised form of a [`Space`]: `{"params": [...]}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSpec {
    /// The parameters, in order.
    pub params: Vec<Param>,
}

impl TryFrom<SpaceSpec> for Space {
    type Error = Error;
    fn try_from(s: SpaceSpec) -> Result<Space> {
        Space::new(s.params)
    }
}

impl From<Space> for SpaceSpec {
    fn from(s: Space) -> SpaceSpec {
        SpaceSpec { params: s.params }
    }
}

impl Space {
    /// Validates the parameters and builds the space.
    pub fn new(params: Vec<Param>) -> Result<Space> {
        if params.is_empty() {
            return Err(Error::invalid("params", "[]", "at least one parameter"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut offsets = Vec::with_capacity(params.len());
        let mut dim = 0;
        for p in &params {
            p.validate()?;
            if !names.insert(p.name().to_string()) {
                return Err(Error::invalid("name", p.name(), "a name not used by another parameter"));
            }
            offsets.push(dim);
            dim += p.encoded_dim();
        }
        Ok(Space { params, offsets, dim })
    }

    /// A space of `d` floats named `x0..x{d-1}`, all on `[low, high]`.
    pub fn uniform_box(d: usize, low: f64, high: f64) -> Result<Space> {
        Space::new((0..d).map(|i| Param::Float { name: format!("x{i}"), low, high }).collect())
    }

    /// Space from bounds per dimension (names `x0..`).
    pub fn from_bounds(bounds: &[(f64, f64)]) -> Result<Space> {
        Space::new(
            bounds
                .iter()
                .enumerate()
                .map(|(i, &(low, high))| Param::Float { name: format!("x{i}"), low, high })
                .collect(),
        )
    }

    /// Reads a space from a JSON string `{"params": [...]}`.
    pub fn from_json_str(s: &str) -> std::result::Result<Space, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The parameters.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Always false: a space has at least one parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Dimension of the unit-cube encoding.
    pub fn encoded_dim(&self) -> usize {
        self.dim
    }

    /// Index of the parameter called `name`.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.params.iter().position(|p| p.name() == name).ok_or_else(|| Error::UnknownParameter {
            name: name.to_string(),
            known: self.params.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Checks a point's length and each value's kind and range.
    pub fn check_point(&self, point: &[Value]) -> Result<()> {
        if point.len() != self.params.len() {
            return Err(Error::DimensionMismatch { what: "point", expected: self.params.len(), got: point.len() });
        }
        for (p, v) in self.params.iter().zip(point) {
            let bad = |allowed: String| Error::invalid(p.name(), v, allowed);
            match (p, v) {
                (Param::Float { low, high, .. } | Param::LogFloat { low, high, .. }, _) => {
                    let x = v.as_f64().ok_or_else(|| bad(format!("a number in [{low}, {high}]")))?;
                    if !(x >= *low && x <= *high) {
                        return Err(bad(format!("a number in [{low}, {high}]")));
                    }
                }
                (Param::Int { low, high, .. }, Value::Int(i)) => {
                    if i < low || i > high {
                        return Err(bad(format!("an integer in {low}..={high}")));
                    }
                }
                (Param::Int { low, high, .. }, _) => {
                    return Err(bad(format!("an integer in {low}..={high}")));
                }
                (Param::Categorical { choices, .. }, Value::Choice(c)) => {
                    if !choices.contains(c) {
                        return Err(bad(format!("one of {choices:?}")));
                    }
                }
                (Param::Categorical { choices, .. }, _) => {
                    return Err(bad(format!("one of {choices:?}")));
                }
            }
        }
        Ok(())
    }

    /// Builds a point from `name -> value` pairs (all parameters required).
    pub fn point_from_map(&self, map: &BTreeMap<String, Value>) -> Result<Point> {
        for k in map.keys() {
            self.index_of(k)?;
        }
        let mut point = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let v = map.get(p.name()).ok_or_else(|| Error::invalid(p.name(), "nothing", "a value is required"))?;
            // Accept an integer-valued float for an int and an int for a float.
            let v = match (p, v) {
                (Param::Int { .. }, Value::Float(f)) if f.fract() == 0.0 => Value::Int(*f as i64),
                (Param::Float { .. } | Param::LogFloat { .. }, Value::Int(i)) => Value::Float(*i as f64),
                _ => v.clone(),
            };
            point.push(v);
        }
        self.check_point(&point)?;
        Ok(point)
    }

    /// The point as a `name -> value` map.
    pub fn point_to_map(&self, point: &[Value]) -> BTreeMap<String, Value> {
        self.params.iter().zip(point).map(|(p, v)| (p.name().to_string(), v.clone())).collect()
    }

    /// Encodes a valid point into unit-cube coordinates.
    pub fn encode(&self, point: &[Value]) -> Result<Vec<f64>> {
        self.check_point(point)?;
        let mut u = vec![0.0; self.dim];
        for ((p, v), &off) in self.params.iter().zip(point).zip(&self.offsets) {
            match p {
                Param::Float { low, high, .. } => {
                    u[off] = (v.as_f64().unwrap_or(*low) - low) / (high - low);
                }
                Param::LogFloat { low, high, .. } => {
                    let x = v.as_f64().unwrap_or(*low);
                    u[off] = (x.ln() - low.ln()) / (high.ln() - low.ln());
                }
                Param::Int { low, high, .. } => {
                    let i = match v {
                        Value::Int(i) => *i,
                        _ => *low,
                    };
                    u[off] = (i as f64 - *low as f64 + 0.5) / ((high - low) as f64 + 1.0);
                }
                Param::Categorical { choices, .. } => {
                    let k = match v {
                        Value::Choice(c) => choices.iter().position(|x| x == c).unwrap_or(0),
                        _ => 0,
                    };
                    u[off + k] = 1.0;
                }
            }
        }
        Ok(u)
    }

    /// Decodes unit-cube coordinates (clamped to [0, 1]) into a point.
    pub fn decode(&self, u: &[f64]) -> Result<Point> {
        if u.len() != self.dim {
            return Err(Error::DimensionMismatch { what: "unit-cube vector", expected: self.dim, got: u.len() });
        }
        if let Some(&bad) = u.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite { what: "unit-cube coordinate", value: bad });
        }
        let mut point = Vec::with_capacity(self.params.len());
        for (p, &off) in self.params.iter().zip(&self.offsets) {
            let t = u[off].clamp(0.0, 1.0);
            point.push(match p {
                Param::Float { low, high, .. } => Value::Float((low + t * (high - low)).clamp(*low, *high)),
                Param::LogFloat { low, high, .. } => {
                    Value::Float((low.ln() + t * (high.ln() - low.ln())).exp().clamp(*low, *high))
                }
                Param::Int { low, high, .. } => {
                    let span = (high - low) as f64 + 1.0;
                    let i = (*low as f64 + (t * span - 0.5).round()) as i64;
                    Value::Int(i.clamp(*low, *high))
                }
                Param::Categorical { choices, .. } => {
                    let mut best = 0;
                    for k in 1..choices.len() {
                        if u[off + k] > u[off + best] {
                            best = k;
                        }
                    }
                    Value::Choice(choices[best].clone())
                }
            });
        }
        Ok(point)
    }

    /// Decodes then re-encodes: the canonical unit-cube representative of `u`.
    pub fn snap(&self, u: &[f64]) -> Result<Vec<f64>> {
        let p = self.decode(u)?;
        self.encode(&p)
    }

    /// True if the space has only `float`/`log_float` parameters (snapping is the identity
    /// up to clamping).
    pub fn is_continuous(&self) -> bool {
        self.params.iter().all(|p| matches!(p, Param::Float { .. } | Param::LogFloat { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixed() -> Space {
        Space::new(vec![
            Param::Float { name: "x".into(), low: -2.0, high: 3.0 },
            Param::LogFloat { name: "lr".into(), low: 1e-5, high: 1e-1 },
            Param::Int { name: "layers".into(), low: 1, high: 4 },
            Param::Categorical { name: "act".into(), choices: vec!["relu".into(), "tanh".into(), "gelu".into()] },
        ])
        .unwrap()
    }

    #[test]
    fn encode_decode_roundtrip() {
        let s = mixed();
        assert_eq!(s.encoded_dim(), 6);
        let p = vec![Value::Float(0.5), Value::Float(1e-3), Value::Int(3), Value::Choice("gelu".into())];
        let u = s.encode(&p).unwrap();
        assert!((u[0] - 0.5).abs() < 1e-15);
        assert!((u[1] - 0.5).abs() < 1e-12);
        assert!((u[2] - 2.5 / 4.0).abs() < 1e-15);
        assert_eq!(&u[3..], &[0.0, 0.0, 1.0]);
        let q = s.decode(&u).unwrap();
        assert_eq!(q[2], Value::Int(3));
        assert_eq!(q[3], Value::Choice("gelu".into()));
        assert!((q[1].as_f64().unwrap() - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn int_bins_are_equal_width_and_snap() {
        let s = Space::new(vec![Param::Int { name: "k".into(), low: 0, high: 4 }]).unwrap();
        let mut counts = [0usize; 5];
        for i in 0..1000 {
            let t = (i as f64 + 0.5) / 1000.0;
            if let Value::Int(k) = s.decode(&[t]).unwrap()[0] {
                counts[k as usize] += 1;
            }
        }
        assert_eq!(counts, [200; 5]);
        let snapped = s.snap(&[0.33]).unwrap();
        assert!((snapped[0] - 0.3).abs() < 1e-15);
        // Decoding clamps out-of-range coordinates.
        assert_eq!(s.decode(&[1.7]).unwrap()[0], Value::Int(4));
        assert_eq!(s.decode(&[-0.2]).unwrap()[0], Value::Int(0));
    }

    #[test]
    fn validation_errors() {
        let e = Space::new(vec![Param::Float { name: "a".into(), low: 1.0, high: 1.0 }]).unwrap_err();
        let invalid = |e: &Error, f: &str| matches!(e, Error::Invalid { field, .. } if field == f);
        assert!(invalid(&e, "a.high") && e.to_string().contains("empty range"), "{e}");
        let e = Space::new(vec![Param::Float { name: "a".into(), low: f64::NAN, high: 1.0 }]).unwrap_err();
        assert!(invalid(&e, "a.low"), "{e}");
        let e = Space::new(vec![Param::LogFloat { name: "a".into(), low: 0.0, high: 1.0 }]).unwrap_err();
        assert!(invalid(&e, "a.low") && e.to_string().contains("log scale"), "{e}");
        let e = Space::new(vec![Param::Int { name: "a".into(), low: 3, high: 2 }]).unwrap_err();
        assert!(invalid(&e, "a.high") && e.to_string().contains("empty range"), "{e}");
        let e = Space::new(vec![Param::Categorical { name: "a".into(), choices: vec![] }]).unwrap_err();
        assert!(invalid(&e, "a.choices"), "{e}");
        let e = Space::new(vec![
            Param::Float { name: "a".into(), low: 0.0, high: 1.0 },
            Param::Int { name: "a".into(), low: 0, high: 1 },
        ])
        .unwrap_err();
        assert!(invalid(&e, "name"), "{e}");
        assert!(invalid(&Space::new(vec![]).unwrap_err(), "params"));
        let s = mixed();
        let e = s.index_of("nope").unwrap_err();
        assert!(e.to_string().contains("nope") && e.to_string().contains("layers"), "{e}");
        let e = s
            .check_point(&[Value::Float(9.0), Value::Float(1e-3), Value::Int(1), Value::Choice("relu".into())])
            .unwrap_err();
        assert!(invalid(&e, "x"), "{e}");
        let e = s
            .check_point(&[Value::Float(0.0), Value::Float(1e-3), Value::Int(1), Value::Choice("elu".into())])
            .unwrap_err();
        assert!(e.to_string().contains("elu"), "{e}");
        let mut m = BTreeMap::new();
        m.insert("bogus".to_string(), Value::Int(1));
        assert!(matches!(s.point_from_map(&m).unwrap_err(), Error::UnknownParameter { .. }));
    }

    #[test]
    fn json_roundtrip_and_validation() {
        let s = mixed();
        let j = serde_json::to_string(&s).unwrap();
        let t: Space = serde_json::from_str(&j).unwrap();
        assert_eq!(s, t);
        let bad = r#"{"params":[{"type":"float","name":"a","low":2,"high":1}]}"#;
        let e = Space::from_json_str(bad).unwrap_err();
        assert!(e.to_string().contains("empty range"), "{e}");
        let unknown = r#"{"params":[{"type":"float","name":"a","low":0,"high":1,"step":2}]}"#;
        assert!(Space::from_json_str(unknown).is_err());
    }
}
