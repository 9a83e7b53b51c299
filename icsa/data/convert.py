"""Convert a dataset between the NetVLAD ``.mat`` layout and the benchmark's file-name layout.

NetVLAD → benchmark: every image is linked (or copied) to
``images/<split>/{database,queries}/@east@north@zone@letter@@@@@@@@@<time>@<note>@.jpg``: the UTM
written with ``repr`` (the shortest text that reads back as the same float), TokyoTM's capture
time in the timestamp field, and the original name, URL-quoted, in the note field. Benchmark →
NetVLAD: images go back to their original names (the note's; a name without a note keeps its
benchmark path) and each split's dbStruct lists them in the benchmark's sorted order with
NetVLAD's radii (25 m, 10 m). So ``.mat → benchmark → .mat`` gives the same images, positions and
times in sorted-name order, byte for byte where the ``.mat`` already was in that order (the
synthetic city is written so: :func:`benchmark_order`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
from tqdm import tqdm

from icsa.data import benchmark
from icsa.data.benchmark import DB_FOLDER, Q_FOLDER, BenchmarkName
from icsa.data.dbstruct import DbStruct, write_dbstruct
from icsa.data.layouts import (
    TIME_MACHINE_DATASETS,
    WRITABLE_LAYOUTS,
    check_layout,
    dataset_splits,
    get_layout,
    load_split,
)
from icsa.errors import InputError

# UTM zone (number, letter) of each NetVLAD dataset's city, written into the benchmark names.
UTM_ZONES = {
    "pitts30k": ("17", "T"),
    "pitts250k": ("17", "T"),
    "tokyotm": ("54", "S"),
    "tokyo247": ("54", "S"),
}


def _time_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def benchmark_names(
    names: list[str], utm: np.ndarray, times: np.ndarray | None, zone: tuple[str, str]
) -> list[str]:
    """The benchmark file name of each image (NetVLAD name → note, URL-quoted)."""
    out = []
    for i, name in enumerate(names):
        fields = BenchmarkName(
            float(utm[i, 0]), float(utm[i, 1]), zone[0], zone[1],
            timestamp="" if times is None else _time_text(times[i]), note=quote(name, safe=""),
        )  # fmt: skip
        out.append(fields.file_name(Path(name).suffix.lower() or ".jpg"))
    return out


def in_benchmark_order(db: DbStruct, zone: tuple[str, str]) -> DbStruct:
    """``db`` with its rows sorted by their benchmark names: the order the split has when it is
    read from the benchmark layout."""

    def order(names, utm, times):
        return sorted(range(len(names)), key=benchmark_names(names, utm, times, zone).__getitem__)

    d = order(db.db_images, db.db_utm, db.db_timestamps)
    q = order(db.q_images, db.q_utm, db.q_timestamps)
    return replace(
        db,
        db_images=[db.db_images[i] for i in d],
        db_utm=db.db_utm[d],
        q_images=[db.q_images[i] for i in q],
        q_utm=db.q_utm[q],
        db_timestamps=None if db.db_timestamps is None else db.db_timestamps[d],
        q_timestamps=None if db.q_timestamps is None else db.q_timestamps[q],
    )


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        if dst.read_bytes() != src.read_bytes():
            raise InputError(f"{dst}: exists with other content than {src}; expected one image")
        return
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copyfile(src, dst)


def _fresh_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not empty; expected a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)


def netvlad_to_benchmark(
    root: str | os.PathLike, dataset: str, out: str | os.PathLike,
    zone: tuple[str, str] | None = None, link: bool = True, progress: bool = True,
) -> dict[str, dict[str, int]]:  # fmt: skip
    """Write every split of the NetVLAD-layout ``dataset`` at ``root`` into ``out`` in the
    benchmark layout; returns ``{split: {"num_db", "num_q"}}``."""
    out = Path(out)
    _fresh_out(out)
    zone = zone or UTM_ZONES.get(dataset, ("", ""))
    summary = {}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in dataset_splits(root, dataset, "netvlad"):
            sp = load_split(root, dataset, split)
            db = sp.db
            db_names = benchmark_names(db.db_images, db.db_utm, db.db_timestamps, zone)
            q_names = benchmark_names(db.q_images, db.q_utm, db.q_timestamps, zone)
            for folder, paths, names in (
                (DB_FOLDER, sp.db_paths, db_names),
                (Q_FOLDER, sp.q_paths, q_names),
            ):
                if len(set(names)) != len(names):
                    raise InputError(
                        f"{sp.source}: lists an image more than once in the {folder}; the "
                        "benchmark layout holds each file once"
                    )
                base = tmp / "images" / split / folder
                quiet = not progress or len(paths) < 1000
                for src, name in tqdm(list(zip(paths, names)), desc=f"{split} {folder}",
                                      disable=quiet, mininterval=5):  # fmt: skip
                    if not src.is_file():
                        raise InputError(f"{src}: image listed in {sp.source} not found")
                    _place(src, base / name, link)
            summary[split] = {"num_db": db.num_db, "num_q": db.num_q}
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _original_name(name: str) -> str:
    note = benchmark.parse_name(name).note
    return unquote(note) if note else name


def benchmark_to_netvlad(
    root: str | os.PathLike, dataset: str, out: str | os.PathLike,
    link: bool = True, progress: bool = True,
) -> dict[str, dict[str, int]]:  # fmt: skip
    """Write every split of the benchmark-layout ``dataset`` at ``root`` into ``out`` in the
    NetVLAD layout (``dataset`` must be one it knows); returns ``{split: {"num_db", "num_q"}}``."""
    out = Path(out)
    _fresh_out(out)
    layout = get_layout(dataset)
    splits = dataset_splits(root, dataset, "benchmark")
    foreign = [s for s in splits if s not in layout.mats]
    if foreign:
        raise InputError(
            f"{Path(root) / 'images'}: split(s) {foreign} have no {dataset} dbStruct in the "
            f"netvlad layout; expected only {list(layout.mats)}"
        )
    summary = {}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in splits:
            sp = load_split(root, dataset, split, "benchmark")
            db_names = [_original_name(n) for n in sp.db.db_images]
            q_names = [_original_name(n) for n in sp.db.q_images]
            for paths, names, base in (
                (sp.db_paths, db_names, tmp / layout.db_dir),
                (sp.q_paths, q_names, tmp / layout.q_dir),
            ):
                quiet = not progress or len(paths) < 1000
                for src, name in tqdm(list(zip(paths, names)), desc=split, disable=quiet,
                                      mininterval=5):  # fmt: skip
                    _place(src, base / name, link)
            db = DbStruct(
                which_set=split, db_images=db_names, db_utm=sp.db.db_utm, q_images=q_names,
                q_utm=sp.db.q_utm, num_db=sp.db.num_db, num_q=sp.db.num_q,
                pos_dist_thr=sp.db.pos_dist_thr, pos_dist_sq_thr=sp.db.pos_dist_sq_thr,
                non_triv_pos_dist_sq_thr=sp.db.non_triv_pos_dist_sq_thr,
                db_timestamps=sp.db.db_timestamps, q_timestamps=sp.db.q_timestamps,
            )  # fmt: skip
            if dataset in TIME_MACHINE_DATASETS and not db.has_timestamps:
                raise InputError(f"{sp.source}: {dataset} images without timestamp fields")
            write_dbstruct(tmp / layout.mats[split], db)
            summary[split] = {"num_db": db.num_db, "num_q": db.num_q}
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        out.rmdir()  # empty, checked before
    tmp.rename(out)


def convert(
    root: str | os.PathLike, dataset: str, source: str, target: str, out: str | os.PathLike,
    zone: tuple[str, str] | None = None, link: bool = True, progress: bool = True,
) -> dict[str, dict[str, int]]:  # fmt: skip
    """``dataset`` at ``root`` from layout ``source`` to layout ``target`` at ``out``."""
    check_layout(source, WRITABLE_LAYOUTS), check_layout(target, WRITABLE_LAYOUTS)
    if source == target:
        raise InputError(f"--from and --to are both {source!r}; expected two different layouts")
    if source == "netvlad":
        return netvlad_to_benchmark(root, dataset, out, zone, link, progress)
    return benchmark_to_netvlad(root, dataset, out, link, progress)
