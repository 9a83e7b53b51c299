"""The workflow's config as specifications: checks, table rows and one RunSpec per training job.

``workflow/rules/common.smk`` is glue around this module. :func:`check` runs at parse time,
after the JSON schema (types, ranges, closed key sets): it checks what a schema cannot — names
against the registries (:mod:`icsa.registry`, including modules the config's ``plugins:``
register), blocks against each backbone's block count, keys of the nested settings records
(train, figures, synthetic city) against their dataclasses, references between sections. A
missing data root is not an error here (``--lint`` and ``-n`` must work on a fresh clone): it is
returned as a warning, and the first job that reads the dataset fails with the same message.
No torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icsa.data.layouts import DEFAULT_LAYOUT, LAYOUTS, PLACE_LAYOUTS
from icsa.errors import InputError
from icsa.records import first_repeat, record_from_dict
from icsa.registry import (
    AGGREGATORS,
    ATTENTIONS,
    BACKBONES,
    DEFAULT_AGGREGATION,
    FOLDED,
    check_block,
    load_plugins,
)
from icsa.spec import ModelSpec, RunSpec, parse_run_id, run_id
from icsa.train.settings import TrainSettings

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


def config_error(key: str, value: Any, expected: str) -> InputError:
    """An error naming the config key, the value found and what was expected."""
    return InputError(f"config error: {key} = {value!r}; expected {expected}")


@dataclass(frozen=True)
class FigureSettings:
    """The optional ``figures:`` section: which runs the figures show (defaults: the paper's)."""

    backbone: str = "vgg16"
    block: str | int = "last"
    seed: int | None = None  # None: the first of `seeds`
    attentions: tuple[str, ...] = ("none", "ia", "icsa")
    weights_attention: str = "icsa"
    retrieval_attention: str = "icsa"
    evalset: str = "main"
    max_images: int = 300
    per_image: int = 10
    tsne_perplexity: float = 30
    tsne_max_points: int = 2000
    num_queries: int = 4


def figure_settings(config: dict[str, Any]) -> FigureSettings:
    return record_from_dict(FigureSettings, config.get("figures"), "figures")


# ---- names -----------------------------------------------------------------------------------
def check_name(registry: dict, name: str, key: str, extra: tuple[str, ...] = ()) -> None:
    if name not in registry and name not in extra:
        raise config_error(key, name, f"one of {[*registry, *extra]}")


def check_once(values: list[Any], key: str, names: list[Any] | None = None) -> None:
    """Each entry of a config list once (``names``: what each entry stands for, when two
    spellings name one thing): a repeat would build, train and count a duplicated table row."""
    repeat = first_repeat(values if names is None else names)
    if repeat is not None:
        first, again = (values[i] for i in repeat)
        why = "a repeat builds a duplicated row"
        if names is not None:
            why = f"{again!r} is {names[repeat[1]]}, as is {first!r}"
        raise config_error(key, again, f"each value listed once ({why})")


def normalise_block(backbone: str, block: str | int, key: str) -> str:
    """'last' → the backbone's last block; ints → strings; numbers checked against the backbone
    (icsa.registry.check_block)."""
    try:
        return check_block(backbone, block, key, last=True)
    except InputError as err:
        raise InputError(f"config error: {err}") from err


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


# ---- table kinds -----------------------------------------------------------------------------
# `tables.<name>.kind`: a run table (the default) has rows of trained runs; an efficiency table
# (Table 2) lists modules whose size and speed `icsa efficiency` measures.
RUN_TABLE, EFFICIENCY_TABLE = "runs", "efficiency"


def table_kind(config: dict[str, Any], name: str) -> str:
    return config["tables"][name].get("kind", RUN_TABLE)


def tables_of_kind(config: dict[str, Any], kind: str) -> list[str]:
    return [name for name in config["tables"] if table_kind(config, name) == kind]


def run_tables(config: dict[str, Any]) -> list[str]:
    return tables_of_kind(config, RUN_TABLE)


def efficiency_modules(config: dict[str, Any]) -> list[str]:
    """What the one efficiency measurement measures: the modules of every efficiency table,
    each once, in order (ICSA alone when no table asks)."""
    tables = [config["tables"][name] for name in tables_of_kind(config, EFFICIENCY_TABLE)]
    return list(dict.fromkeys(m for table in tables for m in table["attentions"])) or ["icsa"]


# ---- the checks ------------------------------------------------------------------------------


def check(config: dict[str, Any]) -> list[str]:
    """Raise InputError for the first config error; return warnings (missing data roots)."""
    load_plugins(config.get("plugins", []))
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
    for name in config["evalsets"]:
        resolve_evalset(config, name, f"evalsets.{name}")
    for name in run_tables(config):
        table_spec(config, name)  # names, blocks, evalset, baseline
    for name in tables_of_kind(config, EFFICIENCY_TABLE):
        modules = config["tables"][name]["attentions"]
        for module in modules:
            check_name(ATTENTIONS, module, f"tables.{name}.attentions", (FOLDED,))
        check_once(modules, f"tables.{name}.attentions")
    for backbone in sorted(
        {b for n in run_tables(config) for b in config["tables"][n]["backbones"]}
    ):
        model_spec(config, backbone, "none", "none", 0)  # image size vs backbone
    TrainSettings.from_dict(config["train"], "train")
    check_step_settings(config)
    check_figures(config)
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


def check_figures(config: dict[str, Any]) -> None:
    fig = figure_settings(config)
    check_name(BACKBONES, fig.backbone, "figures.backbone")
    normalise_block(fig.backbone, fig.block, "figures.block")
    for key in ("weights_attention", "retrieval_attention"):
        check_name(ATTENTIONS, getattr(fig, key), f"figures.{key}")
    for name in fig.attentions:
        check_name(ATTENTIONS, name, "figures.attentions")
    if fig.seed is not None and fig.seed not in config["seeds"]:
        raise config_error("figures.seed", fig.seed, f"one of seeds {config['seeds']}")
    resolve_evalset(config, fig.evalset, "figures.evalset")


# ---- specifications from the config ----------------------------------------------------------
def model_spec(
    config: dict[str, Any],
    backbone: str,
    attention: str,
    block: str,
    init_seed: int,
    aggregation: str = DEFAULT_AGGREGATION,
) -> ModelSpec:
    model = config["model"]
    try:
        return ModelSpec(
            backbone=backbone,
            attention=attention,
            num_clusters=model["num_clusters"],
            image_size=tuple(model["image_size"]),
            weights=model.get("weights", "none"),
            init_seed=int(init_seed),
            lowest_trained_block=block,
            aggregation=aggregation,
        )
    except InputError as err:
        raise InputError(f"config error: model: {err}") from err


def run_spec(config: dict[str, Any], run: str) -> RunSpec:
    """The RunSpec of a run id: its model from `model`, the recipe from `train`; the random
    init is seeded with the run's seed (the k-means job of that seed uses the same)."""
    parts = parse_run_id(run)
    seed = int(parts["seed"])
    model = model_spec(
        config, parts["backbone"], parts["attention"], parts["block"], seed, parts["aggregation"]
    )
    recipe = TrainSettings.from_dict(config["train"], "train")
    trains_bn = BACKBONES[model.backbone].batch_norm and model.lowest_trained_block != "none"
    if recipe.step_chunk and trains_bn:
        # Chunks would change the trained BatchNorm's batch statistics: this run takes its
        # steps whole, and its spec says so (icsa/train/gradient_cache.py).
        recipe = dataclasses.replace(recipe, step_chunk=0)
    return RunSpec(dataset=parts["dataset"], model=model, recipe=recipe, seed=seed)


def table_spec(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The resolved rows of a run table (JSON-able): label parts, run ids per seed, baselines."""
    table = config["tables"][name]
    key = f"tables.{name}"
    evalset = resolve_evalset(config, table["evalset"], f"{key}.evalset")
    for backbone in table["backbones"]:
        check_name(BACKBONES, backbone, f"{key}.backbones")
    for attention in table["attentions"]:
        check_name(ATTENTIONS, attention, f"{key}.attentions")
    aggregations = table.get("aggregations") or [DEFAULT_AGGREGATION]
    for aggregation in aggregations:
        check_name(AGGREGATORS, aggregation, f"{key}.aggregations")
    for part, values in (("backbones", table["backbones"]), ("attentions", table["attentions"]),
                         ("aggregations", aggregations)):  # fmt: skip
        check_once(values, f"{key}.{part}")
    if table["baseline"] not in table["attentions"]:
        raise config_error(
            f"{key}.baseline", table["baseline"], f"one of its attentions {table['attentions']}"
        )
    rows = []
    for backbone in table["backbones"]:
        blocks = [normalise_block(backbone, b, f"{key}.blocks") for b in table["blocks"]]
        check_once(table["blocks"], f"{key}.blocks", [f"block {b} of {backbone}" for b in blocks])
        for block in blocks:
            for aggregation in aggregations:
                for attention in table["attentions"]:
                    runs = [
                        run_id(config["dataset"], backbone, attention, block, seed, aggregation)
                        for seed in config["seeds"]
                    ]
                    rows.append({"backbone": backbone, "attention": attention, "block": block,
                                 "aggregation": aggregation, "runs": runs})  # fmt: skip
    blocks = {row["block"] for row in rows}
    return {
        "table": name,
        "title": table.get("title", name),
        "evalset": evalset,
        "evalset_label": evalset_label(config, evalset),
        "baseline": table["baseline"],
        # Rows trained from a block are also compared with only attention + NetVLAD trained.
        "block_baseline": "none" if "none" in blocks and len(blocks) > 1 else None,
        "seeds": config["seeds"],
        "rows": rows,
    }


# ---- step settings (kmeans, extract, evaluate, efficiency) -----------------------------------
def step_settings(config: dict[str, Any], section: str) -> Any:
    """The settings record of config section ``section`` (icsa.step_settings): the section's
    values, and for keys it leaves out the record's defaults, which are also the CLI's."""
    from icsa.step_settings import settings_from_dict

    return settings_from_dict(section, config.get(section))


def check_step_settings(config: dict[str, Any]) -> None:
    """Every step section against its record: an unknown key or a bad value names the key."""
    from icsa.step_settings import STEP_SETTINGS

    for section in STEP_SETTINGS:
        step_settings(config, section)
