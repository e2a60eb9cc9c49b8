"""Hand a trained model to a device: ONNX files checked against PyTorch in ONNX Runtime.

Two ways to export a :class:`~mdlprune.MultiDomainNet` (trained or pruned):

- ``specialized=True`` (the default): one domain's plain model (:func:`~mdlprune.specialize`): only that
  domain's channels, BatchNorm folded. What a device that serves one domain should run.
- ``specialized=False``: the multi-domain pruned model with the domain fixed, one graph per domain (ONNX files
  do not share weights across graphs, so each file holds the union of the domains' channels).

Every export sets eval mode itself (an export in train mode would bake batch statistics into the graph), leaves
the batch dimension dynamic, and, with ``check=True``, runs the file in ONNX Runtime and compares its output with
PyTorch's on a random batch. ONNX, ONNX Runtime and onnxscript come with ``pip install "mdlprune[deploy]"``.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..method.multidomain import MultiDomainNet
from ..method.specialize import specialize

__all__ = ["ExportReport", "export_onnx", "onnx_runtime_outputs"]

_DEPLOY = 'pip install "mdlprune[deploy]" (onnx, onnxruntime, onnxscript)'


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how far ONNX Runtime's output is from PyTorch's."""

    path: Path
    domain: str
    specialized: bool
    parameters: int  # parameters of the exported module (with specialized=False: every domain's)
    max_abs_diff: float | None  # None when not checked
    output_scale: float | None

    def __str__(self) -> str:
        what = "specialised" if self.specialized else "multi-domain, domain fixed"
        s = f"{self.path} ({what}, domain {self.domain}, {self.parameters:,} parameters)"
        if self.max_abs_diff is not None:
            s += f"; ONNX Runtime vs PyTorch: max |Δ| {self.max_abs_diff:.1e} (outputs up to {self.output_scale:.1f})"
        return s


class _FixedDomain(nn.Module):
    """``model(x, domain)`` as a one-argument module (what an exporter can trace)."""

    def __init__(self, model: MultiDomainNet, domain: int):
        super().__init__()
        self.model, self.domain = model, domain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.domain)


def export_onnx(model: MultiDomainNet, path: str | Path, domain: int | str, *, image_size: int = 32,
                specialized: bool = True, check: bool = True, rtol: float = 1e-5,
                channel_multiple: int = 1) -> ExportReport:  # fmt: skip
    """Export ``model`` for ``domain`` (an index or a name) to the ONNX file ``path`` (module docstring).

    ``image_size``: the side of the example batch that traces the model (the batch size stays dynamic), made on the
    model's device and in its dtype. ``channel_multiple``: as in :func:`~mdlprune.specialize` (the specialised
    model only; e.g. 4 for ONNX Runtime 1.32 on AVX-512 CPUs). With ``check``, a ``RuntimeError`` is raised if ONNX
    Runtime's output differs from ``model(x, domain)``'s by more than ``rtol`` × the output scale. ``model`` is not
    modified."""
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"export_onnx expects a MultiDomainNet (trained or pruned), got {type(model).__name__}")
    try:  # all three before anything is written
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as e:
        raise ImportError(f"exporting to ONNX needs {e.name}: {_DEPLOY}") from None
    d = model.domain_index(domain)
    if channel_multiple != 1 and not specialized:
        raise ValueError("channel_multiple rounds the specialised model's channels; with specialized=False leave it "
                         "at 1")  # fmt: skip
    reference = copy.deepcopy(model).eval().requires_grad_(False)  # the user's model keeps its mode
    reference.keep_domain_models = False  # the check compares with the layers, not with a specialised copy
    module = specialize(reference, d, channel_multiple=channel_multiple) if specialized else _FixedDomain(reference, d)
    module = module.eval().requires_grad_(False)
    p = next(iter(reference.parameters()))
    x = torch.randn(2, model.in_channels, image_size, image_size, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x.to(p.device, p.dtype),), str(path), input_names=["images"],
                          output_names=["logits"], dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                          external_data=False, verbose=False)  # fmt: skip
    report = ExportReport(path, model.domain_names[d], specialized, sum(p.numel() for p in module.parameters()),
                          None, None)  # fmt: skip
    if check:  # ONNX Runtime against the multi-domain model itself, not only against what was exported
        batch = torch.randn(3, model.in_channels, image_size, image_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = reference(batch.to(p.device, p.dtype), d).double().cpu()
        got = torch.from_numpy(onnx_runtime_outputs(path, batch.to(p.dtype))).double()
        report.max_abs_diff = float((got - expected).abs().max())
        report.output_scale = float(expected.abs().max())
        if not (math.isfinite(report.max_abs_diff) and report.max_abs_diff <= rtol * max(report.output_scale, 1e-12)):
            raise RuntimeError(f"the ONNX file {path} does not compute what the model computes: {report}")
    return report


def onnx_runtime_outputs(path: str | Path, images: torch.Tensor):
    """Run the ONNX file ``path`` on ``images`` with ONNX Runtime (CPU); returns a NumPy array of logits."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(f"running an ONNX file needs onnxruntime: {_DEPLOY}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.detach().cpu().numpy()})[0]
