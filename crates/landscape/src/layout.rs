//! Where each named tensor lives in a flat parameter vector.
//!
//! Mirrors `gradlab_core::params::ParamLayout` (entries sorted by name, contiguous) but is owned by
//! this crate so directions can be built and tested without a model.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One tensor inside the flat vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamBlock {
    /// Variable name (e.g. `"l0.weight"`).
    pub name: String,
    /// Tensor shape; the first dimension of a ≥2-D tensor indexes output filters / neurons.
    pub shape: Vec<usize>,
    /// Start index in the flat vector.
    pub offset: usize,
    /// Number of elements (product of `shape`).
    pub len: usize,
}

impl ParamBlock {
    /// Whether this is a bias-like tensor (scalar or 1-D).
    pub fn is_vector(&self) -> bool {
        self.shape.len() <= 1
    }
    /// The index range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The layout of a flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Blocks in flat order.
    pub blocks: Vec<ParamBlock>,
    /// Total number of parameters.
    pub total: usize,
}

impl Layout {
    /// Builds a layout from `(name, shape)` pairs laid out one after another in the given order.
    pub fn from_shapes<S: Into<String>>(shapes: impl IntoIterator<Item = (S, Vec<usize>)>) -> Self {
        let mut blocks = Vec::new();
        let mut offset = 0;
        for (name, shape) in shapes {
            let len = shape.iter().product::<usize>();
            blocks.push(ParamBlock { name: name.into(), shape, offset, len });
            offset += len;
        }
        Self { blocks, total: offset }
    }

    /// A layout with a single 1-D block of `n` parameters (for analytic objectives).
    pub fn flat(n: usize) -> Self {
        Self::from_shapes([("x", vec![n])])
    }

    /// Checks that blocks are contiguous, non-overlapping, cover `total`, and `len` = product of shape.
    pub fn validate(&self) -> Result<()> {
        let mut offset = 0;
        for b in &self.blocks {
            let prod: usize = b.shape.iter().product();
            if b.offset != offset || b.len != prod {
                return Err(Error::InvalidArgument {
                    name: "layout",
                    value: format!(
                        "block {} at offset {} len {} shape {:?} (expected offset {offset})",
                        b.name, b.offset, b.len, b.shape
                    ),
                    allowed: "contiguous blocks in order with len = product of shape",
                });
            }
            offset += b.len;
        }
        if offset != self.total {
            return Err(Error::LengthMismatch { what: "layout total", expected: offset, got: self.total });
        }
        Ok(())
    }
}

impl From<&gradlab_core::params::ParamLayout> for Layout {
    fn from(p: &gradlab_core::params::ParamLayout) -> Self {
        Layout {
            blocks: p
                .entries
                .iter()
                .map(|e| ParamBlock { name: e.name.clone(), shape: e.shape.clone(), offset: e.offset, len: e.len })
                .collect(),
            total: p.total,
        }
    }
}
