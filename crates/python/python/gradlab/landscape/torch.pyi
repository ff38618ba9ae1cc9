"""Type stubs of ``gradlab.landscape.torch`` (PyTorch models as flat-vector objectives)."""

from typing import Any, List, Optional, Tuple, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

_F64: TypeAlias = npt.NDArray[np.float64]
_Vector = npt.ArrayLike
_Axis: TypeAlias = Tuple[float, float, int]

__all__ = ["Objective", "assign", "flatten", "shapes"]

def shapes(module: torch.nn.Module) -> List[Tuple[int, ...]]: ...
def flatten(module: torch.nn.Module) -> Tuple[_F64, List[Tuple[int, ...]]]: ...
def assign(module: torch.nn.Module, theta: _Vector) -> None: ...

class Objective:
    dtype: torch.dtype
    model: torch.nn.Module
    names: List[str]
    shapes: List[Tuple[int, ...]]
    n: int
    num_samples: int
    device: torch.device
    loss_fn: Any
    keep_graph: bool
    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Any,
        batches: Any,
        *,
        dtype: torch.dtype = ...,
        train: bool = False,
        keep_graph: Optional[bool] = None,
    ) -> None: ...
    @property
    def theta(self) -> _F64: ...
    def set_theta(self, theta: _Vector) -> None: ...
    def loss(self, theta: _Vector) -> float: ...
    def loss_and_grad(self, theta: _Vector) -> Tuple[float, _F64]: ...
    def grad(self, theta: _Vector) -> _F64: ...
    def hvp(self, v: _Vector) -> _F64: ...
    def release_graph(self) -> None: ...
    def write_to(self, module: torch.nn.Module, theta: Optional[_Vector] = None) -> None: ...
    def hessian_eigs(self, k: int = 3, **kwargs: Any) -> Tuple[_F64, _F64]: ...
    def directions(self, k: int = 2, seed: int = 0, **kwargs: Any) -> List[_F64]: ...
    def surface(
        self,
        d1: Optional[_Vector] = None,
        d2: Optional[_Vector] = None,
        *,
        seed: int = 0,
        x: _Axis = (-1.0, 1.0, 21),
        y: _Axis = (-1.0, 1.0, 21),
    ) -> Tuple[_F64, _F64, _F64]: ...
