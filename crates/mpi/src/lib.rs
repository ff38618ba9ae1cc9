//! gradlab over MPI.
//!
//! [`world`] gives the job's communicator as a [`gradlab_core::dist::Comm`]: with the cargo
//! feature `mpi` and a launcher's environment (`mpirun`, `srun`), an [`MpiComm`] over
//! `MPI_COMM_WORLD` (rsmpi over the system's MPI); otherwise [`gradlab_core::dist::Local`]. The
//! toolkits' distributed entry points take that handle:
//!
//! - `gradlab_landscape::surface::evaluate_surface_on` — a surface's unfinished points in
//!   contiguous slices per rank, gathered on rank 0, resumable from the usual resume file;
//! - `gradlab_aerosol::sampler::sample_tables_on` — M7 cells in contiguous slices per rank (each
//!   cell draws from its own stream, so the tables do not depend on the rank count);
//! - `gradlab_bayesopt::dist::run_batches` — rank 0 runs the study, the other ranks evaluate.
//!
//! ```no_run
//! let world = gradlab_mpi::world().expect("MPI init");
//! println!("rank {} of {} ({})", world.rank(), world.size(), world.kind());
//! ```
//!
//! The binary `gradlab-mpi-check` runs each of these on small problems and writes the result, so
//! that the tests (`tests/mpirun.rs`, feature `mpi`) can compare `mpirun -np 2` with one process.

use gradlab_core::dist::{Comm, Local};

#[cfg(feature = "mpi")]
pub use imp::MpiComm;

/// Whether this process was started by an MPI launcher (`mpirun`/`mpiexec` of Open MPI or
/// MPICH, Slurm's `srun` with PMI/PMIx).
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"]
        .iter()
        .any(|k| std::env::var_os(k).is_some())
}

/// The job's communicator: MPI's world when built with the `mpi` feature and started by a
/// launcher, else the single-process [`Local`].
///
/// # Errors
/// Started by a launcher with more than one rank but built without the `mpi` feature (every
/// rank would otherwise do the whole job as rank 0 and write the same files), or MPI could not
/// be initialised (it was initialised already).
pub fn world() -> gradlab_core::Result<Box<dyn Comm>> {
    #[cfg(feature = "mpi")]
    if launched_by_mpi() {
        return imp::MpiComm::init().map(|c| Box::new(c) as Box<dyn Comm>);
    }
    #[cfg(not(feature = "mpi"))]
    {
        let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"]
            .iter()
            .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok());
        if launched_by_mpi() && size.is_some_and(|n| n > 1) {
            return Err(gradlab_core::Error::FeatureDisabled {
                what: format!("running as {} MPI ranks", size.unwrap_or(0)),
                feature: "mpi".into(),
            });
        }
    }
    Ok(Box::new(Local))
}

#[cfg(feature = "mpi")]
mod imp {
    use gradlab_core::dist::Comm;
    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::point_to_point::Status;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    /// `MPI_COMM_WORLD` through rsmpi. Dropping it finalises MPI.
    pub struct MpiComm {
        world: SimpleCommunicator,
        // Dropped last: MPI_Finalize.
        _universe: Universe,
    }

    impl std::fmt::Debug for MpiComm {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MpiComm").field("rank", &self.world.rank()).field("size", &self.world.size()).finish()
        }
    }

    impl MpiComm {
        /// Initialises MPI (funnelled threading: only the main thread calls MPI; rayon workers
        /// compute) and takes the world communicator.
        pub fn init() -> gradlab_core::Result<MpiComm> {
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
                gradlab_core::Error::invalid("MPI", "already initialised", "one initialisation per process")
            })?;
            Ok(MpiComm { world: universe.world(), _universe: universe })
        }

        fn count(&self, what: &str, n: usize) -> mpi::Count {
            mpi::Count::try_from(n).unwrap_or_else(|_| {
                eprintln!(
                    "error: rank {}: {what} of {n} bytes is over MPI's 2^31 − 1 element limit; split the work into smaller chunks",
                    self.world.rank()
                );
                self.world.abort(2)
            })
        }
    }

    impl Comm for MpiComm {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn kind(&self) -> &'static str {
            "mpi"
        }
        fn barrier(&self) {
            self.world.barrier();
        }
        fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) {
            let p = self.world.process_at_rank(root as i32);
            let mut len = data.len() as u64;
            p.broadcast_into(&mut len);
            let n = self.count("a broadcast", len as usize);
            data.resize(n as usize, 0);
            p.broadcast_into(&mut data[..]);
        }
        fn gather_bytes(&self, root: usize, data: &[u8]) -> Option<Vec<Vec<u8>>> {
            let p = self.world.process_at_rank(root as i32);
            let len = data.len() as u64;
            if self.rank() != root {
                p.gather_into(&len);
                p.gather_varcount_into(data);
                return None;
            }
            let mut lens = vec![0u64; self.size()];
            p.gather_into_root(&len, &mut lens[..]);
            let total: u64 = lens.iter().sum();
            let counts: Vec<mpi::Count> = lens.iter().map(|&l| self.count("a gathered part", l as usize)).collect();
            let mut displs = Vec::with_capacity(counts.len());
            let mut at: u64 = 0;
            for &l in &lens {
                displs.push(self.count("a gather", at as usize));
                at += l;
            }
            let mut buf = vec![0u8; self.count("a gather", total as usize) as usize];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                p.gather_varcount_into_root(data, &mut part);
            }
            let mut out = Vec::with_capacity(lens.len());
            let mut at = 0usize;
            for l in lens {
                out.push(buf[at..at + l as usize].to_vec());
                at += l as usize;
            }
            Some(out)
        }
        fn send_bytes(&self, dest: usize, tag: u16, data: &[u8]) -> gradlab_core::Result<()> {
            if dest >= self.size() {
                return Err(gradlab_core::Error::invalid(
                    "destination rank",
                    dest,
                    format!("0..{} (the job's ranks)", self.size()),
                ));
            }
            self.count("a message", data.len());
            self.world.process_at_rank(dest as i32).send_with_tag(data, tag as i32);
            Ok(())
        }
        fn recv_bytes(&self, tag: u16) -> gradlab_core::Result<(usize, Vec<u8>)> {
            let (msg, status): (Vec<u8>, Status) = self.world.any_process().receive_vec_with_tag(tag as i32);
            Ok((status.source_rank() as usize, msg))
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}
