"""Evaluation policies: the dataset-specific rules of Recall@N, by name, chosen by the dataset.

Recall@N itself (:mod:`icsa.evaluate.recall`) is the NetVLAD protocol: exact L2 ranking of
the whole database, found at N when one of the N nearest is within the threshold. Two
datasets add a rule to it, each as the NetVLAD reference code (Relja Arandjelović's
``netvlad``, MATLAB) does in its dataset class's ``nnSearchPostprocess``, which its
``testCore.m`` applies to every query's search:

- ``time-machine`` (TokyoTM, ``datasets/dbTokyoTimeMachine.m``): the queries are images of
  the database itself, so every database image captured at the query's own time leaves the
  query's ranking before the 25 m test (and is no positive); the reference searches 10·N deep
  and keeps the first N other-time results.
- ``panoramas`` (Tokyo 24/7, ``datasets/dbTokyo247.m``): each database panorama is cut into 12
  consecutive views; a panorama counts once, at the rank of its best view (the reference's
  "non-max suppression like in Torii et al., CVPR 2015": ``unique(floor((ids-1)/12),
  'stable')`` over a 12·N deep search).
- ``plain``: no rule (Pittsburgh 30k/250k, and any other dataset).

Three more replace the 25 m radius by another ground truth (each cites its reference in
docs/science.md's protocol table; a query is found at N when one of its N nearest is in its
list, as amaralibey/gsv-cities' ``utils/validation.py`` and gmberton/VPR-methods-evaluation
count it):

- ``index-lists``: the dataset's own per-query lists of matching database indices
  (:mod:`icsa.data.ground_truth`): MSLS-val's official ``msls_val_pIdx.npy`` (the ``msls``
  layout) or a benchmark split's ``positives.npz``.
- ``nordland1`` / ``nordland10``: Nordland's frame tolerance, database frames within ±1 / ±10
  frames of the query's (:func:`icsa.data.ground_truth.frame_positives`, frame numbers from the
  names, :mod:`icsa.data.nordland`). ±10 is gmberton/VPR-datasets-downloader's
  ``download_nordland.py`` (``THRESHOLD_FRAMES = 10``, whose dummy UTM makes it the 25 m
  radius); ±1 is VPR-Bench's Nordland subset as BoQ and SALAD report it (2,760 queries, the
  downloader's pull request #16 quotes ``THRESHOLD_FRAMES=1``). Never a default: named only.

:data:`DATASET_POLICIES` maps each dataset of the NetVLAD layout to the policy its protocol
requires. Any other name (a benchmark-layout dataset: msls, nordland, a synthetic city …)
gets :data:`DEFAULT_POLICY`, ``plain``: its protocol is the plain Recall@N, and the
benchmark layout loads capture times only for time machines (icsa.data.layouts) — except a
split that carries its own index lists (the ``msls`` layout, a ``positives.npz``): its protocol
is those lists, ``index-lists`` (:func:`policy_for` with the split). A different
rule is a deliberate choice, made by name (``icsa evaluate --policy NAME``); an unknown name is
an InputError listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from icsa.data.ground_truth import frame_positives
from icsa.data.layouts import TIME_MACHINE_DATASETS
from icsa.errors import InputError
from icsa.evaluate.recall import TIME_RULE, TOKYO247_CUTOUTS, panorama_groups

if TYPE_CHECKING:
    from icsa.data import PlaceSplit


@dataclass(frozen=True)
class EvaluationPolicy:
    """A dataset's rules on top of the plain Recall@N ranking.

    ``drop_same_time``: database images captured at the query's time leave its ranking (and
    its positives); the split must carry capture times. ``panorama_cutouts``: the database is
    made of panoramas of that many consecutive views, each panorama ranked once at its best
    view; None for single images. ``ground_truth``: what makes a positive, ``utm`` (the
    radius), ``index-lists`` (the split's own lists) or ``frames`` (within ±``frame_tolerance``
    frame numbers).
    """

    name: str
    drop_same_time: bool = False
    panorama_cutouts: int | None = None
    description: str = ""
    ground_truth: str = "utm"
    frame_tolerance: int | None = None

    def __post_init__(self) -> None:
        if self.panorama_cutouts is not None and int(self.panorama_cutouts) < 1:
            raise InputError(
                f"policy {self.name}: panorama_cutouts = {self.panorama_cutouts}, "
                "expected a positive number of views per panorama or None"
            )
        if self.ground_truth not in GROUND_TRUTHS:
            raise InputError(
                f"policy {self.name}: ground_truth = {self.ground_truth!r}, expected one of "
                f"{list(GROUND_TRUTHS)}"
            )
        if (self.ground_truth == "frames") != (self.frame_tolerance is not None):
            raise InputError(
                f"policy {self.name}: frame_tolerance = {self.frame_tolerance} with ground_truth "
                f"{self.ground_truth!r}; expected a tolerance exactly for 'frames'"
            )

    def positives(self, split: PlaceSplit) -> tuple[np.ndarray, ...] | None:
        """Each query's positive database indices under this policy, or None for the UTM
        radius (then :func:`icsa.evaluate.recall.retrieve` applies ``threshold``)."""
        if self.ground_truth == "index-lists":
            if split.positives is None:
                raise InputError(
                    f"{split.source}: the {split.dataset} split carries no positive lists "
                    "(positives.npz beside a benchmark split, or the msls layout); expected them "
                    f"for the {self.name} policy, or evaluate with --policy {PLAIN.name}"
                )
            return split.positives
        if self.ground_truth == "frames":
            from icsa.data.nordland import split_frames

            db_frames, q_frames = split_frames(split)
            return frame_positives(db_frames, q_frames, int(self.frame_tolerance))
        return None

    def ranking_rules(self, split: PlaceSplit) -> dict[str, np.ndarray | None]:
        """The filters of :func:`icsa.evaluate.recall.retrieve` for ``split``: ``db_times``,
        ``query_times`` (the time rule) and ``db_groups`` (the panoramas), None where unused.
        A time rule without capture times is an InputError: without them a TokyoTM query would
        find its own capture (R@1 33 % instead of 0 % on the same descriptors)."""
        db = split.db
        if self.drop_same_time and not db.has_timestamps:
            raise InputError(
                f"{split.source}: a {split.dataset} split without capture times (dbTimeStamp, "
                "qTimeStamp, or the benchmark names' timestamp field); expected them for the "
                f"{self.name} policy's time rule, or evaluate with --policy {PLAIN.name}"
            )
        times = (db.db_timestamps, db.q_timestamps) if self.drop_same_time else (None, None)
        groups = None
        if self.panorama_cutouts:
            groups = panorama_groups(int(db.num_db), self.panorama_cutouts)
        return {"db_times": times[0], "query_times": times[1], "db_groups": groups}

    def retrieval_rules(self, split: PlaceSplit) -> dict[str, Any]:
        """Everything :func:`icsa.evaluate.recall.retrieve` takes from this policy for ``split``:
        :meth:`ranking_rules` and ``positives`` (:meth:`positives`). Cheap: callers check it
        before they load or compute descriptors."""
        return {**self.ranking_rules(split), "positives": self.positives(split)}

    def metrics_fields(self) -> dict[str, Any]:
        """How a metrics file records the rules in force (``time_rule``, ``panorama_cutouts``;
        ``ground_truth`` and ``frame_tolerance`` only where the radius is replaced, so the
        metrics of the UTM policies read as before)."""
        fields: dict[str, Any] = {
            "time_rule": TIME_RULE if self.drop_same_time else None,
            "panorama_cutouts": self.panorama_cutouts,
        }
        if self.ground_truth != "utm":
            fields["ground_truth"] = self.ground_truth
            fields["frame_tolerance"] = self.frame_tolerance
        return fields


GROUND_TRUTHS = ("utm", "index-lists", "frames")


PLAIN = EvaluationPolicy("plain", description="every database image ranked (Pittsburgh)")
TIME_MACHINE = EvaluationPolicy(
    "time-machine", drop_same_time=True,
    description="same-time database images leave each query's ranking (TokyoTM)",
)  # fmt: skip
PANORAMAS = EvaluationPolicy(
    "panoramas", panorama_cutouts=TOKYO247_CUTOUTS,
    description=f"{TOKYO247_CUTOUTS} views per database panorama, ranked once (Tokyo 24/7)",
)  # fmt: skip
INDEX_LISTS = EvaluationPolicy(
    "index-lists", ground_truth="index-lists",
    description="the split's own positive database indices per query (MSLS-val's pIdx)",
)  # fmt: skip
NORDLAND1 = EvaluationPolicy(
    "nordland1", ground_truth="frames", frame_tolerance=1,
    description="positives within ±1 frame (VPR-Bench's Nordland, as BoQ/SALAD report it)",
)  # fmt: skip
NORDLAND10 = EvaluationPolicy(
    "nordland10", ground_truth="frames", frame_tolerance=10,
    description="positives within ±10 frames (gmberton/VPR-datasets-downloader's Nordland)",
)  # fmt: skip
POLICIES: dict[str, EvaluationPolicy] = {
    p.name: p for p in (PLAIN, TIME_MACHINE, PANORAMAS, INDEX_LISTS, NORDLAND1, NORDLAND10)
}

DATASET_POLICIES: dict[str, str] = {
    "pitts30k": PLAIN.name,
    "pitts250k": PLAIN.name,
    **{name: TIME_MACHINE.name for name in sorted(TIME_MACHINE_DATASETS)},
    "tokyo247": PANORAMAS.name,
}
DEFAULT_POLICY = PLAIN.name  # every other dataset name (see the module docstring)


def get_policy(name: str) -> EvaluationPolicy:
    """The policy called ``name``; InputError listing the valid names otherwise."""
    if name not in POLICIES:
        raise InputError(f"policy = {name!r} is unknown; expected one of {list(POLICIES)}")
    return POLICIES[name]


def policy_for(
    dataset: str, override: str | None = None, split: PlaceSplit | None = None
) -> EvaluationPolicy:
    """The policy ``dataset``'s protocol requires, or the one named by ``override``. With
    ``split``: a split that carries its own positive lists gets ``index-lists``."""
    if override is not None:
        return get_policy(override)
    if split is not None and split.positives is not None:
        return INDEX_LISTS
    return POLICIES[DATASET_POLICIES.get(dataset, DEFAULT_POLICY)]
