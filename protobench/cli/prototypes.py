"""`protobench prototypes`: generate prototype sets, print their geometry, plot them.

torch and matplotlib are imported inside the commands so that `--help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from protobench.core.errors import UserError
from protobench.core.paths import check_writable

app = typer.Typer(help="Generate, measure and plot prototype sets.", no_args_is_help=True)

METHOD_HELP = "Generator: uniform (DL2PA), hpn, etf, ebv, random."
_LABELS = {
    "max_cosine": "max cosine",
    "min_angle_deg": "min angle (deg)",
    "mean_nn_angle_deg": "mean nearest-neighbour angle (deg)",
    "uniformity_energy": "uniformity energy (t=2)",
    "max_abs_cosine": "max |cosine|",
    "simplex_bound": "simplex bound -1/(K-1)",
    "simplex_gap": "gap to simplex bound",
}


def _generate(method: str, classes: int, dim: int, seed: int, t: float | None, tau: float | None) -> Any:
    from protobench import prototypes

    generator = prototypes.get_generator(method)
    params = {name: value for name, value in (("t", t), ("tau", tau)) if value is not None}
    for name in params:
        if name not in generator.defaults:
            owners = [g for g in prototypes.GENERATORS if name in prototypes.get_generator(g).defaults]
            raise UserError(f"--{name} applies to the {', '.join(owners)} generator only, not {method!r}")
    return prototypes.generate_with_info(method, classes, dim, seed, **params)


def _warn_if_degenerate(P: Any, label: str) -> None:
    """Print a one-line warning on stderr when the set is degenerate (protobench.prototypes.degeneracy)."""
    from protobench.prototypes.degeneracy import degeneracy_warning

    text = degeneracy_warning(P, label)
    if text is not None:
        typer.echo(f"warning: {text}", err=True)


def _print_metrics(title: str, values: dict[str, Any], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in values.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(_LABELS.get(key, key), shown)
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")


@app.command("generate")
def generate_command(
    classes: Annotated[int, typer.Option("--classes", "-K", help="Number of classes K (>= 2).")],
    dim: Annotated[int, typer.Option("--dim", "-d", help="Embedding dimension d (>= 2).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the K x d array (.npy).")],
    method: Annotated[str, typer.Option("--method", "-m", help=METHOD_HELP)] = "uniform",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (deterministic per seed).")] = 0,
    t: Annotated[float | None, typer.Option("--t", help="uniform: Gaussian-potential t (default 2).")] = None,
    tau: Annotated[
        float | None, typer.Option("--tau", help="ebv: max |cos| target (default 0.002, loosened if d < K).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Generate K prototypes in R^d, save them with np.save and print their geometry."""
    if out.suffix != ".npy":
        raise UserError(f"--out {out} must end in .npy (it is written with numpy.save)")
    check_writable(out, "--out")
    import numpy as np

    from protobench import prototypes

    P, info = _generate(method, classes, dim, seed, t, tau)
    try:
        np.save(out, P.numpy())
    except OSError as exc:
        raise UserError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    _warn_if_degenerate(P, f"{method} prototypes")
    values = prototypes.metrics(P).as_dict()
    extra = {"method": method, "classes": classes, "dim": dim, "seed": seed, "params": info.params}
    extra.update(iterations=info.iterations, converged=info.converged, seconds=round(info.seconds, 3))
    if as_json:
        typer.echo(json.dumps({**extra, "metrics": values, "notes": info.notes, "out": str(out)}))
    else:
        _print_metrics(f"{method} prototypes K={classes} d={dim} seed={seed} -> {out}", values, info.notes)


@app.command("show")
def show_command(
    file: Annotated[Path | None, typer.Argument(help="A K x d .npy of unit rows (or use --classes/--dim).")] = None,
    classes: Annotated[int | None, typer.Option("--classes", "-K", help="Generate on the fly: K.")] = None,
    dim: Annotated[int | None, typer.Option("--dim", "-d", help="Generate on the fly: d.")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help=METHOD_HELP)] = "uniform",
    seed: Annotated[int, typer.Option("--seed", help="Random seed when generating.")] = 0,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a PNG: circle (d=2), sphere (d=3), else cosine histogram."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Print the geometry of a prototype set, from a file or generated on the fly; optionally plot it."""
    if file is not None and (classes is not None or dim is not None):
        raise UserError("give either a FILE or --classes/--dim, not both")
    if file is None and (classes is None or dim is None):
        raise UserError("give a FILE.npy, or both --classes and --dim to generate a set")
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise UserError(f"--plot {plot} must end in .png")
        check_writable(plot, "--plot")
    from protobench import prototypes
    from protobench.prototypes.files import load_prototype_file

    notes: list[str] = []
    if file is not None:
        P = load_prototype_file(file)
        title = f"{file} (K={P.shape[0]} d={P.shape[1]})"
    else:
        assert classes is not None and dim is not None  # checked above
        P, info = _generate(method, classes, dim, seed, None, None)
        P, notes = P.numpy(), info.notes
        title = f"{method} prototypes K={classes} d={dim} seed={seed}"
    _warn_if_degenerate(P, str(file) if file is not None else f"{method} prototypes")
    values = prototypes.metrics(P).as_dict()
    if plot is not None:
        from protobench.reporting.prototype_plots import plot_prototypes

        try:
            plot_prototypes(P, plot, title)
        except OSError as exc:
            raise UserError(f"cannot write --plot {plot}: {exc.strerror or exc}") from None
    if as_json:
        typer.echo(json.dumps({"metrics": values, "notes": notes, "plot": str(plot) if plot else None}))
    else:
        _print_metrics(title, values, notes)
        if plot is not None:
            typer.echo(f"plot written to {plot}")
