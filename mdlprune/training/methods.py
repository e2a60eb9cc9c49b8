"""The methods, as one table: what each trains and which of the method's pieces it uses.

Every part of the harness (the trainer, the experiment runner, the sweep, the results table) reads these
flags instead of comparing method names, so a new method is one entry of :data:`METHODS`:

=============  =========================================================================================
``feature``    the frozen backbone as a feature extractor: a new head per domain, nothing else trains
``finetune``   one whole backbone fine-tuned per domain (the S-score's baseline; N models, N × the params)
``ba2``        BA²: switches under the budget loss, per-domain BatchNorms and heads (METHOD §2-3)
``ours``       BA² plus the parameter-sharing loss, so unused channels can be pruned (METHOD §4)
=============  =========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Method", "METHODS", "get_method"]


@dataclass(frozen=True)
class Method:
    """What a method trains and how it is evaluated.

    Attributes:
        name: the configuration's ``train.method``.
        label: how tables and plots name it.
        trains: ``"heads"`` (the classifier heads), ``"domain"`` (heads and per-domain BatchNorms, with SGD)
            or ``"all"`` (every weight but the switches).
        switches: learns switches under the budget loss L_B (with Adam and dual ascent on λ_d); its models
            are pruned before evaluation.
        sharing: adds the parameter-sharing loss L_PS.
        per_domain_models: trains one model per domain instead of one multi-domain model.
        frozen_batchnorm: the backbone's BatchNorm statistics stay the source domain's (eval mode).
        s_score_baseline: its errors set the S-score's E_max (twice the baseline's error, METHOD §7).
    """

    name: str
    label: str
    trains: str
    switches: bool = False
    sharing: bool = False
    per_domain_models: bool = False
    frozen_batchnorm: bool = False
    s_score_baseline: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("feature", "Feature", trains="heads", frozen_batchnorm=True),
        Method("finetune", "Finetune", trains="all", per_domain_models=True, s_score_baseline=True),
        Method("ba2", "BA²", trains="domain", switches=True),
        Method("ours", "Ours", trains="domain", switches=True, sharing=True),
    )
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``, or a ``ValueError`` listing the methods."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}: choose one of {list(METHODS)}") from None
