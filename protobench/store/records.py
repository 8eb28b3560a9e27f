"""The results store: one JSON record per finished cell, written atomically.

Layout: ``<results>/<suite>/<method>/d<dim>_s<seed>[_r<ratio>]_<hash10>.json``. The hash is over the
cell's resolved configuration (everything that changes its numbers, not the device), so a cell with
the same hash is never rerun, and a changed recipe gets a new file instead of overwriting.

Record keys (``RECORD_KEYS`` is the schema): identity (suite, dataset, method, dim, seed,
imbalance_ratio, column), status ("ok", "n/a" with a reason, or "error" with the error), config and
config_hash, setting_hash (the hash without the seed: the seeds of one setting are aggregated),
metrics, per_class_accuracy, shot_groups (long-tailed), history (per epoch), timings, versions,
git_commit, code_digest, device, host, prototype_digest, finished_at. A record is built here:
``new_record`` when a cell starts (identity, config, data, the run's ``provenance``), then
``complete``, ``not_applicable`` or ``failed``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from protobench.core.paths import atomic_write
from protobench.store.schema import RECORD_KEYS as RECORD_KEYS  # re-exported
from protobench.store.schema import UnreadableRecord, check_record
from protobench.suite.spec import CellSpec, config_hash

if TYPE_CHECKING:
    import torch


class TrainedCell(Protocol):
    """What ``complete`` reads of a trained cell: the fields of the engine's ``CellOutcome``, named here so
    that the store imports no engine (docs/engine.md, "Module map")."""

    metrics: dict[str, float | int | None]
    per_class_accuracy: list[float]
    history: list[dict[str, float]]
    method_hyperparameters: dict[str, Any]
    timings: dict[str, float]
    state: dict[str, Any]
    diagnostics: dict[str, float | None]


def provenance(device: torch.device, cuda_graphs: bool, world_size: int = 1) -> dict[str, Any]:
    """What every record of a run shares about where it ran: versions, commit and the digest of the
    code itself (docs/engine.md, "Code identity"), device and host (CPU instruction-set level, threads,
    GPU, driver, cuDNN), whether steps were replayed from CUDA graphs (not in the config hash: the same
    numbers either way) and how many data-parallel processes trained each cell (the global batch is the
    suite's either way)."""
    from protobench.core.device import device_name, replays_graphs
    from protobench.store.code_identity import running_digest
    from protobench.store.host import cpu_model, describe

    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "code_digest": running_digest(),
        "device": device_name(device),
        "cpu": cpu_model(),  # kept beside host.cpu_model for readers of older records
        "host": describe(device),
        "cuda_graphs": replays_graphs(device, cuda_graphs),
        "world_size": world_size,
    }


def new_record(
    *,
    suite: str,
    column: str,
    spec: CellSpec,
    digest: str,
    data: dict[str, Any],
    provenance: dict[str, Any],
    row: str | None = None,
) -> dict[str, Any]:
    """A cell's record before it has an outcome: identity (read from the ``spec``), its config and
    hashes, the numerics versions of the code that trains it, the data's source and counts, and the
    run's ``provenance``. ``row`` names the table row when it is not the method itself (a suite's
    variant; ``config["method"]`` is then its method)."""
    from protobench.store.versions import versions_for

    config = spec.config()
    setting = {k: v for k, v in config.items() if k != "seed"}
    return {
        "suite": suite,
        "dataset": config["dataset"],
        "method": row or config["method"],
        "dim": config["dim"],
        "seed": config["seed"],
        "imbalance_ratio": config["imbalance_ratio"],
        "column": column,
        "config": config,
        "config_hash": digest,
        "setting_hash": config_hash(setting),
        "numerics": versions_for(spec),
        "data": data,
        **provenance,
    }


def complete(
    record: dict[str, Any], outcome: TrainedCell, checkpoint: str | None = None, embeddings: str | None = None
) -> None:
    """Fill a trained cell's record from its outcome (shot groups when long-tailed, the digest of the
    fixed prototypes it trained with: null for a head without them) and name the files saved beside it."""
    from protobench.prototypes.digest import set_digest

    prototypes = outcome.state.get("method", {}).get("prototypes")  # the buffer every fixed-prototype head keeps
    record.update(
        status="ok",
        metrics=outcome.metrics,
        per_class_accuracy=outcome.per_class_accuracy,
        history=outcome.history,
        method_hyperparameters=outcome.method_hyperparameters,
        diagnostics=outcome.diagnostics,
        timings=outcome.timings,
        prototype_digest=set_digest(prototypes) if prototypes is not None else None,
    )
    if record["imbalance_ratio"] is not None:
        record["shot_groups"] = shot_group_accuracy(record["data"]["counts"]["train"], outcome.per_class_accuracy)
    if checkpoint is not None:
        record["checkpoint"] = checkpoint
    if embeddings is not None:
        record["embeddings"] = embeddings
    record["finished_at"] = now()


def not_applicable(record: dict[str, Any], reason: str) -> None:
    """Mark a cell whose method cannot run at its setting (e.g. ETF below d = K-1)."""
    record.update(status="n/a", reason=reason, finished_at=now())


def failed(record: dict[str, Any], error: BaseException, epoch: int | None = None) -> None:
    """Mark a cell that raised (in ``epoch``, 1-based, when it was training); the next run retries it,
    from its last checkpoint. CUDA's out-of-memory error is named as such."""
    import traceback

    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = "CUDA out of memory" if type(error).__name__ == "OutOfMemoryError" else type(error).__name__
    record.update(
        status="error",
        reason=f"{name}: {message}" if message else name,
        traceback="".join(traceback.format_exception(error)),
        finished_at=now(),
    )
    if epoch is not None:
        record["failed_epoch"] = epoch


def shot_group_accuracy(train_counts: list[int], per_class: list[float]) -> dict[str, dict[str, float]]:
    """Accuracy of many/medium/few-shot classes, by train count and by the authors' index ranges."""
    from protobench.data.longtail import group_accuracy, index_range_groups, shot_groups

    return {
        "by_count": group_accuracy(per_class, shot_groups(train_counts)),
        "by_index": group_accuracy(per_class, index_range_groups(len(train_counts))),
    }


def class_names(record: dict[str, Any], num_classes: int | None = None) -> list[str]:
    """The names of a record's classes for plots and tables: those its ``data`` section stores (records made
    since names are stored, from the dataset's files or code), else those its dataset defines in code
    (``DatasetSpec.class_names``: older records), else ``class k``. ``num_classes`` defaults to the number of
    classes the record counts; a name that is missing or empty is ``class k``."""
    data = record.get("data") or {}
    if num_classes is None:
        counted = (data.get("counts") or {}).get("train") or record.get("per_class_accuracy") or []
        num_classes = len(counted)
    names = data.get("class_names")
    if not isinstance(names, list) and record.get("dataset"):
        from protobench.data import DATASETS  # only for records that do not store their names

        names = list(DATASETS.get(record["dataset"]).class_names or []) if record["dataset"] in DATASETS else None
    names = ["" if n is None else str(n) for n in names or []]
    return [names[c] if c < len(names) and names[c] else f"class {c}" for c in range(num_classes)]


def embeddings_path(record_path: Path) -> Path:
    """Where a cell's embedding sample lives: beside its record, ``<record stem>.embeddings.npz``."""
    return record_path.with_name(record_path.stem + ".embeddings.npz")


def save_embeddings(path: Path, arrays: dict[str, Any]) -> str:
    """Save the embedding sample (features, labels, anchors) atomically; returns the file name."""
    import numpy as np

    atomic_write(path, lambda f: np.savez_compressed(f, **{k: v for k, v in arrays.items() if v is not None}))
    return path.name


def cell_path(root: Path, suite: str, method: str, dim: int, seed: int, ratio: float | None, digest: str) -> Path:
    """Where a cell's record lives: always under ``root`` (a name that would lead out of it is refused)."""
    from protobench.core.errors import UserError

    ratio_part = f"_r{ratio:g}" if ratio is not None else ""
    path = Path(root) / suite / method / f"d{dim}_s{seed}{ratio_part}_{digest[:10]}.json"
    if path.resolve().parent.parent.parent != Path(root).resolve():
        raise UserError(f"suite '{suite}', row '{method}': the record would be written outside --results {root}; "
                        "use plain names (letters, digits, '.', '_', '-')")  # fmt: skip
    return path


def find_twin(root: Path, digest: str, path: Path) -> Path | None:
    """A finished record (ok or n/a) elsewhere in the store under ``root`` with config hash ``digest``
    (another suite, or another row name) made with HEAD's numerics, or None. Its config (precision
    included) equals the cell's and the same code made it, so its numbers are the ones the cell would
    train to (docs/ablations.md, "Reuse"); records reused in turn are skipped."""
    from protobench.store.versions import is_stale

    for candidate in sorted(Path(root).glob(f"*/*/*_{digest[:10]}.json")):
        if candidate == path:
            continue
        record = read_record(candidate)
        if (
            finished(record)
            and record.get("config_hash") == digest
            and "reused_from" not in record
            and not is_stale(record)
        ):
            return candidate
    return None


def reuse(root: Path, source: Path, path: Path, *, suite: str, column: str, row: str) -> None:
    """Write the record at ``source`` (and its embedding sample) as the cell at ``path`` of ``suite``,
    under row ``row``, naming where it came from in ``reused_from``."""
    record = load_record(source)
    record.update(suite=suite, column=column, method=row, reused_from=source.relative_to(root).as_posix())
    if record.get("embeddings") and embeddings_path(source).is_file():
        target = embeddings_path(path)
        atomic_write(target, lambda f: f.write(embeddings_path(source).read_bytes()))
        record["embeddings"] = target.name
    record.pop("checkpoint", None)  # the kept checkpoint stays with the original
    write_record(path, record)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON atomically (a temp file in the same folder, fsync, then rename)."""
    atomic_write(path, lambda f: f.write(json.dumps(record, indent=1, default=str).encode()))


def load_record(path: Path) -> dict[str, Any]:
    """The record at ``path``; ``UnreadableRecord`` when the file is missing, unreadable, cut short,
    not JSON or not a JSON object (records are written atomically, so only a copy or an edit breaks one)."""
    try:
        text = path.read_bytes().decode()
    except OSError as error:
        raise UnreadableRecord(error.strerror or type(error).__name__) from None
    except UnicodeDecodeError:
        raise UnreadableRecord("not UTF-8 text") from None
    if not text.strip():
        raise UnreadableRecord("empty file")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        problem = error.msg.removesuffix(" starting at")  # "Unterminated string starting at" needs its position
        raise UnreadableRecord(f"not valid JSON: {problem} at line {error.lineno}") from None
    if not isinstance(record, dict):
        raise UnreadableRecord(f"JSON {type(record).__name__}, not an object")
    check_record(record)
    return record


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing or unreadable; for ``is_finished`` such a
    cell is unfinished, so the next run trains it again and overwrites the file."""
    try:
        return load_record(path)
    except UnreadableRecord:
        return None


def finished(record: dict[str, Any] | None) -> bool:
    """Whether ``record`` is of a cell that ran to its end (ok or n/a), whatever code made it."""
    return record is not None and record.get("status") in ("ok", "n/a")


def is_finished(path: Path, keep_stale: bool = False) -> bool:
    """True when the cell at ``path`` finished (ok or n/a) with HEAD's numerics (or, with ``keep_stale``,
    any); failed cells are retried, stale ones trained again."""
    from protobench.store.versions import is_stale

    record = read_record(path)
    return finished(record) and (keep_stale or not is_stale(record))


def iter_records(
    root: Path, suites: list[str] | None = None, on_unreadable: Callable[[Path, str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Every readable record under ``root`` (optionally only of ``suites``). A file that is not a
    readable record is skipped; ``on_unreadable(path, why)`` hears of each one (the CLI warns)."""
    for path in record_files(Path(root), suites):
        try:
            record = load_record(path)
        except UnreadableRecord as error:
            if on_unreadable is not None:
                on_unreadable(path, str(error))
            continue
        yield record


def record_files(root: Path, suites: list[str] | None = None) -> Iterator[Path]:
    """Every record file of the store (``<root>/<suite>/<row>/<cell>.json``), of ``suites`` only when given."""
    folders = [root / s for s in suites] if suites else sorted(p for p in root.glob("*") if p.is_dir())
    for folder in folders:
        yield from sorted(folder.glob("*/*.json"))


def versions() -> dict[str, str]:
    """Versions of python, torch, torchvision and protobench (torchvision's from its installed metadata:
    importing it takes seconds, and a run that reads no image folder never needs it)."""
    from importlib import metadata

    import torch

    from protobench.core.version import __version__

    try:
        torchvision = metadata.version("torchvision")
    except metadata.PackageNotFoundError:  # e.g. built from a source tree: ask the module itself
        import torchvision as module

        torchvision = module.__version__
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision,
        "protobench": __version__,
    }


def git_commit(checkout: Path | None = None) -> str | None:
    """The commit of the protobench checkout, with ``-dirty`` when its code or suites differ from that
    commit, an untracked file under them included (records then came from uncommitted code: a new
    method file trains cells too); None outside a git checkout."""
    here = checkout or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    root = git("rev-parse", "--show-toplevel")
    code = [str(Path(root) / part) for part in ("protobench", "suites")] if root else ["."]
    changed = git("status", "--porcelain", "--untracked-files=all", "--", *code)
    return f"{commit}-dirty" if changed else commit


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
