"""Saving and loading without losing anything and without trusting pickles.

* :func:`atomic_save` writes to a temporary file in the same folder, flushes it to disk, then renames it
  over the target: an interrupted save leaves the previous file intact, never a truncated one.
* :func:`save_model` / :func:`load_model` store a whole model (architecture and weights: a pruned model's
  shapes differ from any constructor's defaults). Loading uses ``torch.load(weights_only=True)``, PyTorch's
  restricted unpickler, with an allowlist of exactly the ``nn.Module`` classes the file names, looked up in
  a fixed table of the classes of ``torch.nn``, ``torchvision.models`` and mdlprune's layers and backbones.
  Nothing the file names is imported; anything outside the table is refused.

The same thing by hand::

    names = torch.serialization.get_unsafe_globals_in_checkpoint("pruned.pt")   # inspect them first
    with torch.serialization.safe_globals(mdlprune.training.checkpoint.trusted_globals("pruned.pt")):
        model = torch.load("pruned.pt", weights_only=True)
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchvision.models  # noqa: F401  (registers its model classes for the allowlist)

from ..method import backbones, domain, multidomain, pruned, specialize, switch
from . import distributed

__all__ = ["atomic_save", "save_model", "load_model", "trusted_globals", "load_checkpoint", "CheckpointError",
           "RunMismatchError", "check_identity", "check_rounds", "fingerprint", "callable_identity"]

TRUSTED_MODULE_PREFIXES = ("torch.nn.", "torchvision.models.")
# Where a layer class lived in earlier versions: files saved then name it there.
_MOVED = {"mdlprune.method.prune.PrunedConv2d": pruned.PrunedConv2d}


@functools.lru_cache(maxsize=1)
def _allowlist() -> dict[str, type]:
    """``{"module.Class": class}`` of every ``nn.Module`` class a saved model may name."""
    modules = [m for name, m in list(sys.modules.items()) if name.startswith(TRUSTED_MODULE_PREFIXES)]
    modules += [backbones, domain, multidomain, pruned, specialize, switch, distributed]
    table = dict(_MOVED)
    for module in modules:
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                table[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return table


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or holds something we refuse to unpickle."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and a rename (atomic on POSIX and Windows)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a folder; give a file name (or remove the folder)")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # PyTorch's zip writer reports a failed write (e.g. a full disk) this way
                if "PytorchStreamWriter" not in str(e) and "unexpected pos" not in str(e):
                    raise
                raise OSError(f"cannot write {path}: {' '.join(str(e).split())[:200]} (is the disk full?)") from e
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file: remove it or give the file's path")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path, or train/save one first")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (or it is truncated/corrupt): it is not the zip archive "
            "torch.save writes; delete it and save it again"
        )


def _unsafe_globals(path: Path) -> list[str]:
    """The globals (classes, functions) a file asks the unpickler for, beyond tensors and plain containers."""
    _check_file(path)
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {e}; the file is corrupt, write it again") from e


def trusted_globals(path: str | os.PathLike) -> list[type]:
    """The classes a saved model needs, if all are ``nn.Module`` classes of torch, torchvision or mdlprune.

    Raises :class:`CheckpointError` naming any other global the file asks for.
    """
    path = Path(path)
    names = _unsafe_globals(path)
    table = _allowlist()
    refused = [name for name in names if name not in table]
    if refused:
        hint = ""
        if any(n.startswith("mdlprune.") for n in refused):
            hint = (" Names under mdlprune that are not in the table come from another version of mdlprune (or name "
                    "something that is not a layer): save the model again with this version.")
        raise CheckpointError(
            f"{path} needs globals outside the allowlist (nn.Module classes of torch.nn, torchvision.models and "
            f"mdlprune's layers): {refused}.{hint} If you trust the file, load it with "
            "torch.serialization.safe_globals(...)."
        )
    return [table[name] for name in names]


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save a whole model (e.g. the output of :func:`mdlprune.prune`) atomically."""
    return atomic_save(model, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_model` with ``torch.load(weights_only=True)`` (see module doc)."""
    classes = [(cls, name) for cls, name in zip(trusted_globals(path), _unsafe_globals(Path(path)))]
    try:
        with torch.serialization.safe_globals(classes):  # ((class, the name the file uses): moved classes too)
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot load {path}: {e}") from e
    if not isinstance(obj, nn.Module):
        what = "a training checkpoint" if isinstance(obj, dict) and "format" in obj else (
            "a state dict" if isinstance(obj, dict) else f"a {type(obj).__name__}")
        raise CheckpointError(f"{path} holds {what}, not a model: give a model file written by `mdlprune train` "
                              "(model.pt) or `mdlprune prune`")  # fmt: skip
    return obj


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a training checkpoint (plain dicts of tensors and numbers) with ``weights_only=True``."""
    path = Path(path)
    names = _unsafe_globals(path)
    if names:
        table = _allowlist()
        if all(n in table for n in names):
            raise CheckpointError(f"{path} is a saved model, not a training checkpoint: give the checkpoint.pt "
                                  "of a run folder (or load the model with mdlprune.load_model)")  # fmt: skip
        raise CheckpointError(f"{path} is not a training checkpoint: it asks to unpickle {names}, which mdlprune "
                              "never writes into a checkpoint; refused")  # fmt: skip
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot load checkpoint {path}: {e}; the file is corrupt, delete it") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a training checkpoint dict")
    return obj


RESTART = "mdlprune train/demo/sweep --restart; train_method(..., restart=True); or delete the checkpoint"


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names and bytes): which backbone weights a run started from."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def callable_identity(fn: Callable) -> str:
    """``module.qualname`` of a callable and a hash of what defines it: its source when Python can read it (a
    loss edited in a notebook is then another loss), the arguments a ``functools.partial`` binds, the values a
    closure or default arguments hold, a module's settings and buffers (``IntersectionLoss(lambda_ps=0.5)`` is
    not ``IntersectionLoss(lambda_ps=1.0)``)."""
    parts: list[str] = []
    while isinstance(fn, functools.partial):
        parts.append(repr((fn.args, sorted(fn.keywords.items()))))
        fn = fn.func
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    try:
        parts.append(inspect.getsource(target))
    except (OSError, TypeError):
        parts.append("<no source>")
    code = getattr(fn, "__func__", fn)
    parts.append(repr(getattr(code, "__defaults__", None)))
    parts += [repr(c.cell_contents) for c in getattr(code, "__closure__", None) or () if _has(c)]
    if isinstance(fn, nn.Module):
        parts.append(repr(sorted((k, v) for k, v in vars(fn).items() if isinstance(v, (int, float, str, bool)))))
        parts += [f"{k}={v.tolist()}" for k, v in fn.state_dict().items()]
    return f"{name}#{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:12]}"


def _has(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


class RunMismatchError(CheckpointError):
    """A checkpoint or run folder was made with other settings than the ones asked for now."""


def check_rounds(done: int, asked: int, where: str | os.PathLike) -> None:
    """Refuse a checkpoint that completed more rounds than a run asks for: its model is not that run's."""
    if done > asked:
        raise RunMismatchError(
            f"{where} has trained {done} rounds, more than the {asked} asked for now: ask for at least {done} rounds, "
            f"or keep both runs apart (another output folder; tag= in Python), or train afresh over it ({RESTART})"
        )


def check_identity(saved: dict | None, now: dict, where: str | os.PathLike) -> None:
    """Refuse (:class:`RunMismatchError`, naming every differing setting) unless the run identity stored in a
    checkpoint equals ``now``. An identity is ``{section: {setting: value}}`` of everything that changes the
    result (see :func:`mdlprune.experiments.runs.run_identity`)."""
    if not saved:
        raise RunMismatchError(f"{where} does not record the settings it was trained with (an older mdlprune wrote "
                               f"it): train afresh over it ({RESTART})")  # fmt: skip
    diffs = []
    for section in sorted(set(saved) | set(now)):
        a, b = saved.get(section) or {}, now.get(section) or {}
        if not isinstance(a, dict) or not isinstance(b, dict):
            a, b = {"": a}, {"": b}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                name = f"{section}.{key}" if key else section
                diffs.append(f"{name}: {a.get(key)!r} in the checkpoint, {b.get(key)!r} now")
    if diffs:
        raise RunMismatchError(
            f"{where} was trained with other settings ({'; '.join(diffs)}): resume with the same settings, keep both "
            f"runs apart (another output folder; tag= in Python), or train afresh over it ({RESTART})"
        )
