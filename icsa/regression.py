"""The CI regression check: a small configuration where training moves, run in one process.

``config/regression.yaml`` names a small synthetic city (the embedded default's query regime: a
small viewpoint change and a strong daytime appearance change, where training from random
weights beats the untrained backbone), a recipe of a few seconds per run, the runs and the
evaluation sets. :func:`run_regression` renders the city, runs k-means, trains, extracts and
evaluates with the same library functions the workflow's jobs call (one process instead of one
per job, so that a fault-injection check can afford many runs) and records, per run and
evaluation set, every query's first-hit rank and a fixed random projection of the first query
descriptors (which sees changes that move no rank). :func:`compare` checks a result against a
recorded baseline:

- **exact** where the environment (torch version, CPU capability) is the baseline's: every
  query's first-hit rank the same, projections equal to float32 precision (CPU training and
  evaluation are deterministic here: fixed seeds, one thread, float32, exact search);
- **within the measured drift** elsewhere: per run and evaluation set, the baseline records how
  far honest runs under other kernels moved (``ATEN_CPU_CAPABILITY`` and oneDNN's ISA, see
  :func:`build_baseline`), and allows that plus a margin. Runs that train only NetVLAD move not
  at all across capabilities, so they stay exact everywhere; runs that train conv5 move a third
  of their ranks (float sums in another order change the SGD trajectory), so they are checked
  loosely and the faults are caught by the stable runs.

``tests/test_regression.py`` runs the check on the clean code and shows that it fails for each of
six realistic injected faults (``tests/helpers/mutants.py``).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from icsa import layout
from icsa.errors import InputError
from icsa.records import record_from_dict

NS = (1, 5)  # the recalls compared (R@10 and R@20 saturate on a small city)


@dataclass(frozen=True)
class RegressionConfig:
    """``config/regression.yaml``: what one regression run trains and evaluates."""

    seed: int
    city: dict[str, Any]
    model: dict[str, Any]
    kmeans: dict[str, Any]
    train: dict[str, Any]
    runs: tuple[dict[str, Any], ...]
    evalsets: tuple[str, ...]
    threshold: float = 25.0

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegressionConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"regression config {path} not found; expected config/regression.yaml")
        return record_from_dict(cls, yaml.safe_load(path.read_text()), str(path))


def environment() -> dict[str, str]:
    """What decides whether results can be compared bit for bit."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def projection(descriptors: np.ndarray, rows: int = 8, dims: int = 16) -> list[float]:
    """The first ``rows`` descriptors times a fixed Gaussian matrix [D, dims] (seed 0): a small
    fingerprint that moves when descriptors move, even where no rank does."""
    x = np.asarray(descriptors[:rows], dtype=np.float64)
    matrix = np.random.default_rng(0).standard_normal((x.shape[1], dims)) / np.sqrt(x.shape[1])
    return [float(v) for v in (x @ matrix).ravel()]


def _run_name(run: dict[str, Any]) -> str:
    return f"{run['attention']}-b{run['block']}-s{run.get('seed', 0)}"


def run_regression(config: RegressionConfig, work: str | os.PathLike) -> dict[str, Any]:
    """Render, cluster, train, extract and evaluate every run of ``config`` under ``work``;
    returns ``{"environment", "results": {"<run>/<evalset>": {"first_hit_rank", "recalls",
    "projection"}}}``."""
    import torch

    from icsa.centroids import centroid_source
    from icsa.data import load_split, split_datasets
    from icsa.data.synthetic import generate
    from icsa.data.synthetic.settings import CitySettings
    from icsa.evaluate.extract import extract_in_memory
    from icsa.evaluate.metrics import evaluate_split
    from icsa.spec import ModelSpec, RunSpec
    from icsa.step_settings import settings_from_dict
    from icsa.train.checkpoint import load_model
    from icsa.train.job import RunInputs, RunOptions
    from icsa.train.kmeans import compute_centroids
    from icsa.train.run import train_run
    from icsa.train.settings import TrainSettings

    torch.set_num_threads(1)
    work = Path(work)
    city = work / "city"
    settings = CitySettings.from_dict(config.city)
    generate(city, config.seed, settings, workers=1, progress=False)
    recipe = TrainSettings.from_dict(config.train, "regression train")
    kmeans = settings_from_dict("kmeans", config.kmeans)
    results: dict[str, Any] = {}
    for run in config.runs:
        seed = int(run.get("seed", 0))
        model = ModelSpec(attention=run["attention"], lowest_trained_block=str(run["block"]),
                          init_seed=seed, **config.model)  # fmt: skip
        source = centroid_source(model.attention)
        centroids = Path(layout.centroids_file("pitts30k", model.backbone, source, seed, work))
        if not centroids.is_file():
            compute_centroids(
                model, city / "pitts30k", "pitts30k", "train", centroids, kmeans, seed=seed,
                threads=1,
            )  # fmt: skip
        run_dir = Path(layout.run_dir(_run_name(run), work))
        train_run(RunSpec("pitts30k", model, recipe, seed), RunInputs(city / "pitts30k", centroids),
                  run_dir, RunOptions(device="cpu", threads=1, enable_dvclive=False))  # fmt: skip
        net = load_model(layout.checkpoint_best(_run_name(run), work), map_location="cpu")
        for evalset in config.evalsets:
            dataset, split_name = evalset.rsplit("-", 1)
            split = load_split(city / dataset, dataset, split_name)
            paths = {}
            for side, images in zip(("db", "q"), split_datasets(split, tuple(model.image_size))):
                paths[side] = run_dir / f"{evalset}-{side}.npy"
                np.save(paths[side], extract_in_memory(net, images, 32, device="cpu"))
            metrics, per_query = evaluate_split(
                split, paths["db"], paths["q"], _run_name(run), threshold=config.threshold
            )
            results[f"{_run_name(run)}/{evalset}"] = {
                "first_hit_rank": [int(r) for r in per_query["first_hit_rank"]],
                "recalls": {str(n): float(metrics["recalls"][str(n)]) for n in NS},
                "projection": projection(np.load(paths["q"])),
            }
    return {"environment": environment(), "results": results}


EXACT_PROJECTION = 1e-6  # float32 descriptors: equal to their precision
MARGIN = {"changed_ranks": 2, "found": 1, "projection": 1e-4}  # added to the measured drift


@dataclass(frozen=True)
class Drift:
    """How far one result is from another, for one run and evaluation set."""

    changed_ranks: int  # queries whose first-hit rank differs
    found: int  # the largest |Δ Found@N| in queries, over N in NS
    projection: float  # the largest |Δ| of the descriptor projection

    def to_dict(self) -> dict[str, float]:
        return {"changed_ranks": self.changed_ranks, "found": self.found,
                "projection": self.projection}  # fmt: skip


def _same_keys(result: dict[str, Any], baseline: dict[str, Any]) -> None:
    if set(result["results"]) != set(baseline["results"]):
        raise InputError(
            f"regression results hold {sorted(result['results'])}, the baseline "
            f"{sorted(baseline['results'])}; expected the same runs and evaluation sets (run "
            "config/regression.yaml as recorded in the baseline)"
        )


def drift(result: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Drift]:
    """Per run/evaluation set, how far ``result`` is from ``baseline``."""
    _same_keys(result, baseline)
    out = {}
    for key, theirs in baseline["results"].items():
        ours = result["results"][key]
        a, b = np.asarray(ours["first_hit_rank"]), np.asarray(theirs["first_hit_rank"])
        if a.shape != b.shape:
            raise InputError(f"{key}: {a.size} queries vs the baseline's {b.size}")
        found = max(
            abs(int(((a >= 0) & (a < n)).sum()) - int(((b >= 0) & (b < n)).sum())) for n in NS
        )
        proj = np.abs(np.asarray(ours["projection"]) - np.asarray(theirs["projection"]))
        out[key] = Drift(int(np.sum(a != b)), found, float(proj.max()))
    return out


def build_baseline(reference: dict[str, Any], others: list[dict[str, Any]], command: str):
    """The baseline file: ``reference``'s results, and per run/evaluation set the drift measured
    against each of ``others`` (the same config under other kernels) with the tolerance it
    implies (the largest drift plus :data:`MARGIN`)."""
    measured = {key: Drift(0, 0, 0.0) for key in reference["results"]}
    environments = []
    for other in others:
        environments.append(other["environment"])
        for key, d in drift(other, reference).items():
            m = measured[key]
            measured[key] = Drift(max(m.changed_ranks, d.changed_ranks), max(m.found, d.found),
                                  max(m.projection, d.projection))  # fmt: skip
    allowed = {
        key: {name: value + MARGIN[name] for name, value in d.to_dict().items()}
        for key, d in measured.items()
    }
    return {
        "environment": reference["environment"],
        "results": reference["results"],
        "tolerance": {
            "command": command,
            "measured_against": environments,
            "measured": {key: d.to_dict() for key, d in measured.items()},
            "margin": MARGIN,
            "allowed": allowed,
        },
    }


def compare(
    result: dict[str, Any], baseline: dict[str, Any], tolerant: bool | None = None
) -> list[str]:
    """Problems of ``result`` against ``baseline`` (empty: the check passes): exact where the
    environments match, else (or with ``tolerant=True``) within the baseline's tolerance."""
    if tolerant is None:
        tolerant = result["environment"] != baseline["environment"]
    exact = {"changed_ranks": 0, "found": 0, "projection": EXACT_PROJECTION}
    problems = []
    for key, d in drift(result, baseline).items():
        allowed = baseline["tolerance"]["allowed"][key] if tolerant else exact
        for name, value in d.to_dict().items():
            if value > allowed[name]:
                problems.append(f"{key}: {name} moved by {value:g} (allowed {allowed[name]:g})")
    return problems
