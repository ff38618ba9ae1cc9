//! Work split over processes: the [`Comm`] handle.
//!
//! The toolkits' distributed entry points (`gradlab_landscape::surface::evaluate_surface_on`,
//! `gradlab_aerosol::sampler::sample_tables_on`, `gradlab_bayesopt::dist::run_batches`) take a
//! `&dyn Comm` and split their work over its ranks. [`Local`] is the single-process
//! implementation (rank 0 of 1) that every build has; the MPI implementation lives in the
//! `gradlab-mpi` crate behind its `mpi` cargo feature (rsmpi over the system's MPI), so that
//! nothing here links MPI.
//!
//! The trait moves bytes; the typed helpers ([`broadcast_json`], [`gather_json`], [`send_json`],
//! [`recv_json`]) move anything serde can write. All ranks call a collective ([`Comm::barrier`],
//! [`Comm::broadcast_bytes`], [`Comm::gather_bytes`]) in the same order, as in MPI.

use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A group of cooperating processes (ranks `0..size`), as an MPI communicator.
pub trait Comm: std::fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// `"local"`, `"mpi"`, …: for logs and run records.
    fn kind(&self) -> &'static str;
    /// Waits until every rank has called it.
    fn barrier(&self);
    /// After the call every rank's `data` equals the root's.
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>);
    /// The root receives every rank's `data`, in rank order; the other ranks get `None`.
    fn gather_bytes(&self, root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>>;
    /// Sends `data` to rank `dest` with `tag`.
    fn send_bytes(&self, dest: usize, tag: u16, data: &[u8]) -> Result<()>;
    /// Receives the next message with `tag` from any rank: `(source, data)`.
    fn recv_bytes(&self, tag: u16) -> Result<(usize, Vec<u8>)>;
    /// Ends every rank of the job (MPI_Abort); used when one rank fails where the others would
    /// wait for it forever.
    fn abort(&self, code: i32) -> !;

    /// Whether this is rank 0, the rank that writes files and reports.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The single-process communicator: rank 0 of 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Comm for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn kind(&self) -> &'static str {
        "local"
    }
    fn barrier(&self) {}
    fn broadcast_bytes(&self, _root: usize, _data: &mut Vec<u8>) {}
    fn gather_bytes(&self, _root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>> {
        Some(vec![data.to_vec()])
    }
    fn send_bytes(&self, dest: usize, _tag: u16, _data: &[u8]) -> Result<()> {
        Err(Error::invalid("destination rank", dest, "another rank; a single process (Local) has none"))
    }
    fn recv_bytes(&self, _tag: u16) -> Result<(usize, Vec<u8>)> {
        Err(Error::invalid("receive", "from another rank", "nothing: a single process (Local) has no other rank"))
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::external(format!("decoding {what} received from another rank"), e))
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::external(format!("encoding {what} for another rank"), e))
}

/// Broadcasts the root's `value` (`Some` on the root, ignored elsewhere) to every rank.
///
/// # Errors
/// The root passed `None`, or the value does not round-trip through JSON.
pub fn broadcast_json<T: Serialize + DeserializeOwned>(comm: &dyn Comm, root: usize, value: Option<T>) -> Result<T> {
    let mut bytes = if comm.rank() == root {
        let v = value.as_ref().ok_or_else(|| Error::invalid("broadcast value", "None on the root", "Some(value)"))?;
        encode("a broadcast", v)?
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(root, &mut bytes);
    match value {
        Some(v) if comm.rank() == root => Ok(v),
        _ => decode("a broadcast", &bytes),
    }
}

/// Gathers every rank's `value` on the root, in rank order (`None` on the other ranks).
pub fn gather_json<T: Serialize + DeserializeOwned>(comm: &dyn Comm, root: usize, value: &T) -> Result<Option<Vec<T>>> {
    let bytes = encode("a gather", value)?;
    match comm.gather_bytes(root, &bytes) {
        Some(all) => all.iter().map(|b| decode("a gather", b)).collect::<Result<Vec<T>>>().map(Some),
        None => Ok(None),
    }
}

/// Sends `value` to rank `dest`.
pub fn send_json<T: Serialize>(comm: &dyn Comm, dest: usize, tag: u16, value: &T) -> Result<()> {
    comm.send_bytes(dest, tag, &encode("a message", value)?)
}

/// Receives the next `tag` message from any rank: `(source, value)`.
pub fn recv_json<T: DeserializeOwned>(comm: &dyn Comm, tag: u16) -> Result<(usize, T)> {
    let (src, bytes) = comm.recv_bytes(tag)?;
    Ok((src, decode("a message", &bytes)?))
}

/// One rank's part of a [`gather_parts`]: a header (any bytes, e.g. JSON counts) and numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Part {
    pub head: Vec<u8>,
    pub values: Vec<f64>,
}

/// Gathers every rank's [`Part`] on the root, in rank order (`None` on the other ranks). The
/// numbers travel as their bits (NaN and infinities included), not as text.
///
/// # Errors
/// A part that does not decode (a rank of another build).
pub fn gather_parts(comm: &dyn Comm, root: usize, part: &Part) -> Result<Option<Vec<Part>>> {
    let mut bytes = Vec::with_capacity(8 + part.head.len() + 8 * part.values.len());
    bytes.extend_from_slice(&(part.head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&part.head);
    for v in &part.values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let Some(all) = comm.gather_bytes(root, &bytes) else { return Ok(None) };
    let mut out = Vec::with_capacity(all.len());
    for (rank, b) in all.iter().enumerate() {
        let bad = || {
            Error::invalid("gathered part", format!("{} bytes from rank {rank}", b.len()), "a part of the same build")
        };
        let n = b.get(..8).map(|h| u64::from_le_bytes(h.try_into().expect("8 bytes")) as usize).ok_or_else(bad)?;
        let head = b.get(8..8usize.saturating_add(n)).ok_or_else(bad)?.to_vec();
        let rest = &b[8 + n..];
        if rest.len() % 8 != 0 {
            return Err(bad());
        }
        let values = rest.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        out.push(Part { head, values });
    }
    Ok(Some(out))
}

/// The contiguous slice of `0..n` that rank `rank` of `size` takes: the first `n % size` ranks
/// take one item more than the others, so slices differ in length by at most one.
///
/// # Panics
/// If `size == 0` or `rank >= size` (a [`Comm`] never gives such values).
pub fn contiguous_slice(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(size > 0 && rank < size, "rank {rank} of {size}");
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Runs `f` and agrees on its outcome across the ranks: if any rank's `f` fails, every rank
/// returns an error (the failing ranks their own, the others one naming the first failing rank),
/// so that no rank goes on into a collective that another rank will never reach.
pub fn agree<T, E>(comm: &dyn Comm, f: impl FnOnce() -> std::result::Result<T, E>) -> std::result::Result<T, E>
where
    E: std::fmt::Display + From<Error>,
{
    let out = f();
    let failed = out.as_ref().err().map(|e| e.to_string());
    let all = gather_json(comm, 0, &failed)?;
    let first: Option<(usize, String)> =
        all.and_then(|v| v.into_iter().enumerate().find_map(|(r, m)| m.map(|m| (r, m))));
    let first = broadcast_json(comm, 0, Some(first))?;
    match (out, first) {
        (Err(e), _) => Err(e),
        (Ok(_), Some((rank, message))) => Err(Error::Distributed { rank, message }.into()),
        (Ok(v), None) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_slices_cover_once_and_balance() {
        for n in [0, 1, 5, 7, 100, 2601] {
            for size in 1..=9 {
                let slices: Vec<Range<usize>> = (0..size).map(|r| contiguous_slice(n, r, size)).collect();
                let mut next = 0;
                for s in &slices {
                    assert_eq!(s.start, next, "n {n} size {size}");
                    next = s.end;
                }
                assert_eq!(next, n);
                let lens: Vec<usize> = slices.iter().map(|s| s.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
            }
        }
    }

    #[test]
    fn local_collectives_are_identities() {
        let c = Local;
        assert_eq!((c.rank(), c.size(), c.is_root()), (0, 1, true));
        let v: Vec<f64> = broadcast_json(&c, 0, Some(vec![1.5, -2.0])).unwrap();
        assert_eq!(v, vec![1.5, -2.0]);
        assert_eq!(gather_json(&c, 0, &3u32).unwrap(), Some(vec![3]));
        assert!(broadcast_json::<u8>(&c, 0, None).is_err());
        assert!(send_json(&c, 1, 0, &1u8).is_err());
        assert!(c.recv_bytes(0).is_err());
        let part = Part { head: b"{\"n\":2}".to_vec(), values: vec![1.0, f64::NAN, -0.0, f64::INFINITY] };
        let got = gather_parts(&c, 0, &part).unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].head, part.head);
        assert!(got[0].values.iter().zip(&part.values).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(agree::<_, Error>(&c, || Ok(4)).unwrap(), 4);
        assert!(agree::<(), Error>(&c, || Err(Error::invalid("x", 1, "2"))).is_err());
    }
}
