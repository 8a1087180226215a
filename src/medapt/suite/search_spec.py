"""The ``search:`` and ``similarity:`` sections of the experiment YAML (issue 12; docs/search.md).

Kept apart from :mod:`medapt.suite.search` (the planner) so that the experiment model imports only
pydantic here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SearchSpec", "SimilaritySpec", "SEARCH_METHOD_NAMES"]

#: the search methods (their implementations: medapt.suite.search.SEARCH_METHODS)
SEARCH_METHOD_NAMES = ("ttl", "probe", "svcca", "lwft")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchSpec(_Model):
    """A cut-point search on one target task (Peng et al.'s TruncatedTL and cheaper variants).

    ``methods``: any of ``ttl`` (the paper's two-stage fine-tuning search), ``probe`` (one forward
    pass + a linear probe per cut point), ``svcca`` (the paper's SVCCA detection), ``lwft``
    (incremental layer-wise fine-tuning). ``task``: the target task searched (default: the first);
    ``seed``: the seed of the candidates (default: the first of ``seeds``); ``head``: ``gap``
    (``TTL@k``) or ``flatten`` (``TTL-flatten@k``); ``metric``: the validation metric that chooses.
    ``run_chosen``: the chosen strategy then runs like the experiment's other strategies (every
    task and seed, own head, downstream heads). ``probe_finetune``: the probe also fine-tunes its
    best ``TTL@k`` (else it only ranks). ``cut_points``: restrict the probe to these cut points.
    ``svcca_draws`` / ``svcca_fraction``: the detection's random subsets. ``lwft_max_units``: at
    most this many backbone units become trainable in the ``lwft`` search.
    """

    methods: list[str] = Field(default_factory=lambda: ["probe"], min_length=1)
    task: str | None = None
    seed: int | None = None
    head: Literal["gap", "flatten"] = "gap"
    metric: Literal["auprc", "auroc"] = "auprc"
    run_chosen: bool = True
    probe_finetune: bool = True
    cut_points: list[int] | None = None
    svcca_draws: int = Field(10, ge=2)
    svcca_fraction: float = Field(0.5, gt=0, le=1)
    lwft_max_units: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from ..errors import UnknownNameError

        for m in v:
            if m not in SEARCH_METHOD_NAMES:
                raise UnknownNameError("search method", m, SEARCH_METHOD_NAMES)
        if len(set(v)) != len(v):
            raise ValueError("search.methods lists a method twice")
        return v


class SimilaritySpec(_Model):
    """Per-unit similarity between the ImageNet weights and each DAPT strategy's weights.

    ``methods``: ``svcca``, ``pwcca``, ``cka``; ``task``: the target task whose images are used
    (default: the first); ``max_images``: at most this many of its training + validation images.
    """

    methods: list[str] = Field(default_factory=lambda: ["svcca", "pwcca", "cka"], min_length=1)
    task: str | None = None
    max_images: int = Field(2000, ge=4)
    batch_size: int = Field(64, ge=1)
