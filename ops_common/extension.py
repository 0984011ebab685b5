"""One loader for the operators' compiled extensions and one routing policy for their cores.

Every op package (``ops_dcnv3``, ``ops_dcnv4``, ``ops_roialign``) owns one :class:`ExtensionLoader` for its
``<package>._C``: imported lazily, once, never required (a missing or stale binary is an ``ImportError`` kept for
the message). :meth:`ExtensionLoader.route` is the single policy deciding where a core call runs: the compiled
kernel, or the PyTorch reference when exporting to ONNX (no custom op for runtimes to provide) or when the
kernel cannot run on the input (not built; built without CUDA for a CUDA tensor), which a warning says once.
"""
from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import torch  # noqa: F401  (loads libtorch, which every _C links against, before _C is imported)

T = TypeVar('T')


class ExtensionLoader:
    """The compiled ``<package>._C`` of one op package; ``op`` names the operator in messages (e.g. 'DCNv3')."""

    def __init__(self, package: str, op: str):
        self.package = package
        self.op = op
        self.module: ModuleType | None = None
        self.error: Exception | None = None
        self.fallback_warned = False

    def load(self) -> ModuleType | None:
        """The compiled module, or None where it is not built or cannot load (imported once, lazily)."""
        if self.module is None and self.error is None:
            try:
                self.module = importlib.import_module(f'{self.package}._C')
            except ImportError as error:  # not built, or built against another torch
                self.error = error
        return self.module

    def available(self) -> bool:
        return self.load() is not None

    def build_hint(self) -> str:
        return f'`make setup` or `cd {self.package} && sh make.sh`'

    def missing_message(self, alternative: str) -> str:
        """Why the kernel is unavailable, how to build it and what to use instead."""
        return (f'{self.package}: the compiled {self.op} extension is not available ({self.error}); build it with '
                f'{self.build_hint()}, or use {alternative}')

    def fallback_reason(self, input: torch.Tensor, extension: ModuleType | None) -> str | None:
        """Why the compiled kernel cannot run on ``input`` (None when it can; 'onnx' under export)."""
        if torch.onnx.is_in_onnx_export():
            return 'onnx'  # exported graphs use the PyTorch core (GridSample): no custom op for runtimes to provide
        if extension is None:
            return (f'the compiled {self.op} extension {self.package}._C is not available ({self.error}), so {self.op} '
                    f'runs the (slower) pure-PyTorch core. Build it with {self.build_hint()}.')
        if input.is_cuda and not extension.with_cuda:
            return (f'the compiled {self.op} extension was built without CUDA, so {self.op} runs the pure-PyTorch core '
                    'on CUDA tensors. Rebuild it where nvcc and a CUDA build of torch are present '
                    f'({self.build_hint()}).')
        return None

    def route(self, input: torch.Tensor, kernel: Callable[[], T], reference: Callable[[], T],
              stacklevel: int = 3) -> T:
        """``kernel()`` where the compiled kernel can run on ``input``, else ``reference()`` (warned once, except
        under ONNX export). ``stacklevel`` 3 points the warning at the caller of route's caller."""
        reason = self.fallback_reason(input, self.load()) if isinstance(input, torch.Tensor) else None
        if reason is None:
            return kernel()
        if reason != 'onnx' and not self.fallback_warned:
            warnings.warn(f'{self.package}: {reason}', stacklevel=stacklevel)
            self.fallback_warned = True
        return reference()
