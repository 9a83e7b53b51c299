"""The config's datasets: roles of the synthetic city, layouts, evaluation sets, the validation
split, and the parse-time checks of the ``dataset``, ``datasets``, ``validation`` and
``synthetic`` keys (:func:`check_datasets`, called by :func:`icsa.pipeline.check`). No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icsa.data.layouts import DEFAULT_LAYOUT, LAYOUTS, PLACE_LAYOUTS
from icsa.errors import config_error

# What each dataset stands in for, in the synthetic city's labels (the generator writes these).
SYNTHETIC_ROLES = {"pitts30k": "Pitts30k", "tokyotm": "TokyoTM", "tokyo247": "Tokyo 24/7",
                   "gsvcities": "GSV-Cities"}  # fmt: skip
# Synthetic roles written in a layout of their own, whatever the city's layout is.
OWN_LAYOUT_ROLES = {"gsvcities": "gsvcities"}
# Synthetic roles written only when a setting is positive: (the setting, what to set).
OPTIONAL_ROLES = {
    "tokyo247": ("tokyo247_db", "a positive size (and tokyo247_q: config/rehearsal.yaml)"),
    "gsvcities": ("gsv_places", "a positive number of places (config/gsv_cities.yaml sets it)"),
}


def split_evalset(evalset: str) -> tuple[str, str]:
    """'pitts30k-test' → ('pitts30k', 'test'); 'msls-val-cph' → ('msls', 'val-cph'), a per-city
    split (icsa/data/msls.py). Dataset names hold no dash (icsa.registry.NAME)."""
    dataset, split = evalset.split("-", 1)
    return dataset, split


def resolve_evalset(config: dict[str, Any], name: str, key: str) -> str:
    """A key of `evalsets` (e.g. main) or a literal '{dataset}-{split}'."""
    evalset = config["evalsets"].get(name, name)
    if "-" not in evalset:
        raise config_error(key, name, f"one of {sorted(config['evalsets'])} or DATASET-SPLIT")
    dataset = split_evalset(evalset)[0]
    if dataset not in config["datasets"]:
        raise config_error(key, evalset, f"a dataset under datasets: {sorted(config['datasets'])}")
    return evalset


def evalset_label(config: dict[str, Any], evalset: str) -> str:
    """How tables, figures and the report name an evaluation set: the synthetic city is never
    called by the real dataset's name ("synthetic Pitts30k-role city, test")."""
    dataset, split = split_evalset(evalset)
    if config.get("synthetic") and dataset in SYNTHETIC_ROLES:
        return f"synthetic {SYNTHETIC_ROLES[dataset]}-role city, {split}"
    return evalset


def missing_root_message(name: str, root: str | Path, layout: str = DEFAULT_LAYOUT) -> str:
    """What the parse-time warning and the failing dataset check both say of a missing root."""
    return (
        f"datasets.{name}.root = {str(root)!r}: no such folder; expected a folder in the {layout} "
        'layout (docs/architecture.md, "Data"), or `synthetic:` to generate one'
    )


def dataset_layout(config: dict[str, Any], name: str) -> str:
    """``datasets.<name>.layout``: netvlad (the default) or benchmark."""
    return config["datasets"][name].get("layout", DEFAULT_LAYOUT)


def dataset_policy(config: dict[str, Any], name: str) -> str | None:
    """``datasets.<name>.policy``: the evaluation policy named in config (Nordland's frame
    tolerance, icsa.evaluate.policy), or None for the one the dataset's protocol requires."""
    return config["datasets"][name].get("policy")


def validation_split(config: dict[str, Any]) -> str | None:
    """``validation``: the DATASET-SPLIT every run validates on when it is not the training
    dataset's own ``val`` (None: that one). GSV-Cities has no val split, so it needs one."""
    name = config.get("validation")
    return None if name is None else resolve_evalset(config, name, "validation")


def synthetic_layout(config: dict[str, Any]) -> str:
    """The one layout the synthetic city is written in: that of every dataset it stands for."""
    layouts = {
        dataset_layout(config, n)
        for n in config["datasets"]
        if n in SYNTHETIC_ROLES and n not in OWN_LAYOUT_ROLES
    }
    if len(layouts) > 1:
        raise config_error(
            "datasets.*.layout", sorted(layouts), "one layout for every synthetic dataset"
        )
    return layouts.pop() if layouts else DEFAULT_LAYOUT


def check_datasets(config: dict[str, Any]) -> list[str]:
    """Raise InputError for the first error in the data keys; return warnings (missing roots)."""
    warnings = []
    if config["dataset"] not in config["datasets"]:
        raise config_error("dataset", config["dataset"], f"one of {sorted(config['datasets'])}")
    synthetic = config.get("synthetic")
    if synthetic:
        from icsa.data.synthetic.settings import CitySettings  # numpy only

        city = CitySettings.from_dict(synthetic.get("settings") or {})
        for role, (setting, expected) in OPTIONAL_ROLES.items():
            if role in config["datasets"] and not getattr(city, setting):
                raise config_error(
                    f"synthetic.settings.{setting}", getattr(city, setting),
                    f"{expected} when datasets.{role} is synthetic: the city writes its "
                    f"{SYNTHETIC_ROLES[role]} role only then",
                )  # fmt: skip
    for name, entry in config["datasets"].items():
        root = Path(entry["root"])
        own = OWN_LAYOUT_ROLES.get(name)
        if synthetic and own and dataset_layout(config, name) != own:
            raise config_error(
                f"datasets.{name}.layout", dataset_layout(config, name),
                f"{own} (the synthetic city writes its {name} role so)",
            )  # fmt: skip
        if dataset_layout(config, name) == "netvlad" and name not in LAYOUTS:
            raise config_error(
                f"datasets.{name}", name,
                f"one of {sorted(LAYOUTS)} in the netvlad layout (any name: layout benchmark)",
            )  # fmt: skip
        if dataset_layout(config, name) == "msls" and name == config["dataset"]:
            raise config_error(
                f"datasets.{name}.layout", "msls", "a layout with a train split: the msls "
                "layout reads MSLS-val (icsa/data/msls.py), an evaluation set",
            )  # fmt: skip
        if synthetic and name in SYNTHETIC_ROLES:
            # The generator writes <out>/pitts30k, <out>/tokyotm and (when its sizes are set)
            # <out>/tokyo247; any other dataset (msls, nordland …) is the user's.
            expected = Path(synthetic["out"]) / name
            if root != expected:
                raise config_error(
                    f"datasets.{name}.root", str(root), f"{expected} (synthetic.out)"
                )
        elif not root.is_dir():
            warnings.append(missing_root_message(name, root, dataset_layout(config, name)))
    if synthetic:
        synthetic_layout(config)
    check_training_data(config)
    return warnings


def check_training_data(config: dict[str, Any]) -> None:
    """The validation split exists, and a dataset of labelled places without queries (the
    gsvcities layout) trains the multisimilarity regime and validates elsewhere."""
    validation = validation_split(config)
    train = config["dataset"]
    if validation is not None and split_evalset(validation)[0] == train:
        raise config_error(
            "validation", validation, f"another dataset's split (unset: {train}-val, the "
            "training dataset's own)",
        )  # fmt: skip
    if dataset_layout(config, train) not in PLACE_LAYOUTS:
        return
    regime = config["train"].get("regime", "triplet")
    if regime != "multisimilarity":
        raise config_error(
            "train.regime", regime, f"multisimilarity: {train} (layout "
            f"{dataset_layout(config, train)}) has labelled places and no queries, no triplets",
        )  # fmt: skip
    if validation is None:
        raise config_error(
            "validation", None, f"a DATASET-SPLIT to validate on (e.g. pitts30k-val): {train} "
            f"(layout {dataset_layout(config, train)}) has no val split",
        )  # fmt: skip
