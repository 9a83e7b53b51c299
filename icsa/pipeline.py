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
from typing import Any

from icsa.config_datasets import (  # the workflow reads these as pipeline.* too
    SYNTHETIC_ROLES,  # noqa: F401
    check_datasets,
    dataset_layout,  # noqa: F401
    dataset_policy,  # noqa: F401
    evalset_label,
    missing_root_message,  # noqa: F401
    resolve_evalset,
    split_evalset,  # noqa: F401
    synthetic_layout,  # noqa: F401
    validation_split,  # noqa: F401
)
from icsa.errors import InputError, config_error
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
    warnings = check_datasets(config)
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
