"""Type stubs of the Rust extension module ``gradlab._gradlab`` (re-exported by the
submodules ``gradlab.lap``, ``gradlab.aerosol``, ``gradlab.track``, ``gradlab.bayesopt`` and
``gradlab.landscape``, which carry the documentation)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]
_FloatArray = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

# gradlab.lap
def linear_sum_assignment(
    cost_matrix: _FloatArray,
    maximize: bool = False,
    *,
    partial: bool = False,
    unmatched_cost: Optional[float] = None,
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def linear_sum_assignment_many(
    cost_matrices: Sequence[_FloatArray],
    maximize: bool = False,
    *,
    partial: bool = False,
    unmatched_cost: Optional[float] = None,
) -> List[Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]: ...

# gradlab.aerosol
class M7:
    def __init__(self, config: Union[None, Dict[str, Any], _Path] = None) -> None: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    def step(self, cells: _FloatArray) -> npt.NDArray[np.float64]: ...
    @property
    def columns(self) -> List[str]: ...
    @property
    def units(self) -> List[str]: ...
    @property
    def input_columns(self) -> List[str]: ...

class Emulator:
    @staticmethod
    def load(directory: _Path) -> "Emulator": ...
    def predict(self, x: _FloatArray) -> npt.NDArray[np.float32]: ...
    def step(self, x: _FloatArray) -> npt.NDArray[np.float64]: ...
    @property
    def input_columns(self) -> List[str]: ...
    @property
    def output_columns(self) -> List[str]: ...
    @property
    def dt(self) -> float: ...
    @property
    def parameters(self) -> int: ...
    @property
    def config(self) -> Dict[str, Any]: ...

def m7_step_file(
    input: _Path, output: _Path, config: Optional[_Path] = None, overwrite: bool = False
) -> Dict[str, Any]: ...

def sample_cells(
    n: int, seed: int = 0, start: int = 0, config: Union[None, Dict[str, Any], _Path] = None
) -> npt.NDArray[np.float64]: ...

# gradlab.track
class Simulator:
    def __init__(self, config: Union[Dict[str, Any], _Path]) -> None: ...
    @staticmethod
    def bergen(thickness_mm: float = 150.0, primaries: int = 100) -> "Simulator": ...
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def num_layers(self) -> int: ...
    def frame(self, seed: int, index: int) -> Dict[str, Any]: ...

def generate_dataset(
    directory: _Path,
    config: Union[Dict[str, Any], _Path],
    seed: int,
    splits: Sequence[Tuple[str, int]],
    overwrite: bool = False,
) -> Dict[str, Any]: ...
def load_split(directory: _Path, split: str) -> List[Dict[str, Any]]: ...

class HitGraph:
    def __init__(self, frame: Dict[str, Any], config: Optional[Dict[str, Any]] = None) -> None: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_edges(self) -> int: ...
    @property
    def edge_index(self) -> npt.NDArray[np.int64]: ...
    @property
    def hit(self) -> npt.NDArray[np.uint32]: ...
    @property
    def layer(self) -> npt.NDArray[np.uint16]: ...
    @property
    def pos(self) -> npt.NDArray[np.float32]: ...
    @property
    def node_features(self) -> npt.NDArray[np.float32]: ...
    @property
    def edge_features(self) -> npt.NDArray[np.float32]: ...
    @property
    def edge_truth(self) -> npt.NDArray[np.bool_]: ...
    def line_graph(self) -> Dict[str, npt.NDArray[Any]]: ...

def purity_efficiency(
    frame: Union[Dict[str, Any], HitGraph], tracks: Sequence[Sequence[int]], filter: bool = True
) -> Dict[str, Any]: ...
def tracks_from_edges(
    graph: HitGraph, selected: Sequence[bool], filter: bool = True, max_paths: int = 200000
) -> List[npt.NDArray[np.int64]]: ...

class Tracker:
    @staticmethod
    def load(directory: _Path, card: Optional[Dict[str, Any]] = None) -> "Tracker": ...
    def reconstruct(self, frame: Dict[str, Any]) -> Dict[str, Any]: ...
    @property
    def card(self) -> Dict[str, Any]: ...

def reconstruct(
    frame: Dict[str, Any], model_dir: _Path, card: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]: ...

# gradlab.bayesopt
class Trial:
    @property
    def id(self) -> int: ...
    @property
    def params(self) -> Dict[str, Any]: ...

class Study:
    def __init__(
        self,
        space: Union[Dict[str, Any], Sequence[Any]],
        lag: Union[None, int, str] = None,
        q: int = 1,
        seed: int = 0,
        n_initial: int = 0,
        incumbent: str = "best_observed",
        acq_func: Optional[str] = None,
    ) -> None: ...
    @property
    def q(self) -> int: ...
    def ask(self) -> Trial: ...
    def ask_batch(self, q: Optional[int] = None) -> List[Trial]: ...
    def tell(self, trial: Union[Trial, int], value: float) -> None: ...
    def tell_failed(self, trial: Union[Trial, int], reason: str) -> None: ...
    def save(self, path: _Path) -> None: ...
    @staticmethod
    def load(path: _Path, q: int = 1) -> "Study": ...
    @property
    def best(self) -> Optional[Tuple[Dict[str, Any], float]]: ...
    @property
    def best_by_posterior_mean(self) -> Optional[Tuple[Dict[str, Any], float]]: ...
    @property
    def trials(self) -> List[Dict[str, Any]]: ...
    @property
    def names(self) -> List[str]: ...
    @property
    def last_overhead_s(self) -> float: ...
    def __len__(self) -> int: ...

def minimize(
    func: Callable[[List[Any]], float],
    dimensions: Union[Dict[str, Any], Sequence[Any]],
    n_calls: int = 100,
    n_initial_points: int = 0,
    random_state: int = 0,
    lag: Union[None, int, str] = None,
    acq_func: Optional[str] = None,
) -> Dict[str, Any]: ...

# gradlab.landscape
def surface(
    loss: Callable[[npt.NDArray[np.float64]], float],
    theta: _FloatArray,
    d1: _FloatArray,
    d2: Optional[_FloatArray] = None,
    x: Tuple[float, float, int] = (-1.0, 1.0, 21),
    y: Tuple[float, float, int] = (-1.0, 1.0, 21),
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def hessian_eigs(
    theta: _FloatArray,
    k: int = 3,
    *,
    hvp: Optional[Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = None,
    grad: Optional[Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = None,
    which: str = "largest",
    max_steps: Optional[int] = None,
    tol: float = 1e-10,
    seed: int = 0,
    h: float = 1e-3,
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def random_direction(
    theta: _FloatArray,
    shapes: Optional[Sequence[Sequence[int]]] = None,
    normalization: str = "filter",
    vectors: str = "zero",
    seed: int = 0,
) -> npt.NDArray[np.float64]: ...
def pca_directions(
    trajectory: _FloatArray, reference: _FloatArray, k: int = 2, center: bool = True
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
_Hvp = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]

def trace(
    theta: _FloatArray,
    *,
    hvp: Optional[_Hvp] = None,
    grad: Optional[_Hvp] = None,
    products: int = 99,
    method: str = "hutch++",
    seed: int = 0,
    h: float = 1e-3,
) -> Dict[str, Any]: ...
def density(
    theta: _FloatArray,
    *,
    hvp: Optional[_Hvp] = None,
    grad: Optional[_Hvp] = None,
    probes: int = 4,
    steps: int = 60,
    seed: int = 0,
    grid: Optional[_FloatArray] = None,
    sigma: Optional[float] = None,
    h: float = 1e-3,
) -> Dict[str, Any]: ...
def linear_path(
    loss: Callable[[npt.NDArray[np.float64]], float],
    theta_a: _FloatArray,
    theta_b: _FloatArray,
    points: int = 51,
) -> Dict[str, Any]: ...
def bezier(
    loss: Callable[[npt.NDArray[np.float64]], float],
    grad: _Hvp,
    theta_a: _FloatArray,
    theta_b: _FloatArray,
    *,
    control: Optional[_FloatArray] = None,
    steps: int = 500,
    samples_per_step: int = 4,
    lr: float = 1e-2,
    seed: int = 0,
    points: int = 51,
) -> Dict[str, Any]: ...
def save_surface(
    directory: _Path, xs: _FloatArray, ys: _FloatArray, z: _FloatArray, stem: str = "surface"
) -> List[str]: ...
def write_vtk(path: _Path, xs: _FloatArray, ys: _FloatArray, z: _FloatArray, z_scale: float = 1.0) -> None: ...
