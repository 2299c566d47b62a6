"""Where every stage's artifacts, metrics and plots live: the one place that says so.

Each function takes the params (whose ``paths`` section roots the folders) and returns a
path relative to the repository. The stage modules import the ones they read or write
(under the names they export, e.g. ``impq.pipeline.spqe.samples_path``), and the stage
declarations (:mod:`impq.pipeline.stages`) build ``dvc.yaml``'s deps and outs from them.
"""

from __future__ import annotations

from pathlib import Path

from impq.config import Params

__all__ = [
    "assembled_cells_dir",
    "assembled_metrics_path",
    "assembled_result_path",
    "assign_dir",
    "assignment_path",
    "baseline_path",
    "baselines_dir",
    "calibration_path",
    "compare_metrics_path",
    "compare_result_paths",
    "eval_tokens_path",
    "evopress_assignment_path",
    "evopress_checkpoint_path",
    "evopress_dir",
    "evopress_metrics_path",
    "export_dir",
    "export_metrics_path",
    "float_metrics_path",
    "marginals_path",
    "objective_path",
    "objectives_dir",
    "report_plot_paths",
    "samples_path",
    "sampling_metrics_path",
    "seeded_assignment_path",
    "seeded_checkpoint_path",
    "seeded_dir",
    "seeded_metrics_path",
    "shapley_path",
    "spqe_checkpoint_path",
    "spqe_database_dir",
    "spqe_metrics_path",
    "sweep_cells_dir",
    "sweep_float_path",
    "sweep_plot_dir",
    "sweep_table_paths",
    "verify_assignment_path",
    "verify_dir",
    "verify_metrics_path",
]


def _artifacts(params: Params, *parts: str) -> Path:
    return Path(params.paths.artifacts).joinpath(*parts)


def _metrics(params: Params, *parts: str) -> Path:
    return Path(params.paths.metrics).joinpath(*parts)


# prepare, evaluate
def calibration_path(params: Params) -> Path:
    """The calibration set (``prepare``)."""
    return _artifacts(params, "data", "calibration.safetensors")


def eval_tokens_path(params: Params) -> Path:
    """The tokenized evaluation split (``prepare``)."""
    return _artifacts(params, "data", "eval_tokens.safetensors")


def float_metrics_path(params: Params) -> Path:
    """The float model's perplexity (``evaluate``)."""
    return _metrics(params, "float.json")


# spqe, interactions, report
def samples_path(params: Params) -> Path:
    """The raw walks of the sampled permutations (``spqe``)."""
    return _artifacts(params, "spqe", "samples.npz")


def sampling_metrics_path(params: Params) -> Path:
    """The flat metrics of the sampling run: evaluations, timings (``spqe``)."""
    return _artifacts(params, "spqe", "sampling.json")


def spqe_checkpoint_path(params: Params) -> Path:
    """The permutations of the sampling run in progress (deleted once done)."""
    return _artifacts(params, "spqe", "checkpoint.npz")


def spqe_database_dir(params: Params) -> Path:
    """The per-block databases a calibrated ``spqe.backend`` (gptq) plays the game on, one
    file per database; kept between runs, so a resumed or repeated run reads its database
    instead of building it again."""
    return _artifacts(params, "spqe", "databases")


def shapley_path(params: Params) -> Path:
    """The Shapley result (``interactions``)."""
    return _artifacts(params, "spqe", "shapley.npz")


def marginals_path(params: Params) -> Path:
    """The (M, L) marginal contributions (``interactions``)."""
    return _artifacts(params, "spqe", "marginals.npy")


def objectives_dir(params: Params) -> Path:
    """The methods' objectives, one ``<method>.npz`` each (``interactions``)."""
    return _artifacts(params, "spqe", "objectives")


def objective_path(params: Params, method: str) -> Path:
    """The objective of ``method`` (``interactions``)."""
    return objectives_dir(params) / f"{method}.npz"


def spqe_metrics_path(params: Params) -> Path:
    """The flat SPQE metrics (``interactions``)."""
    return _metrics(params, "spqe.json")


def report_plot_paths(params: Params) -> dict[str, Path]:
    """The SPQE plots by kind (``report``)."""
    root = Path(params.paths.plots)
    return {
        "bars": root / "shapley.png",
        "csv": root / "shapley.csv",
        "heatmap": root / "interactions.png",
    }


# assignments: assign, baselines, evopress, verify, seeded
def assign_dir(params: Params) -> Path:
    """The objective methods' assignments, ``<method>/<budget>.json`` (``assign``)."""
    return _artifacts(params, "assign")


def assignment_path(params: Params, budget: float, method: str) -> Path:
    """An objective method's assignment for ``budget`` (e.g. ``.../impq/3.0.json``)."""
    return assign_dir(params) / method / f"{float(budget)}.json"


def baselines_dir(params: Params) -> Path:
    """The baselines' assignments, ``<method>/<budget>.json`` (``baselines``)."""
    return _artifacts(params, "baselines")


def baseline_path(params: Params, budget: float, method: str) -> Path:
    """A baseline's assignment for ``budget`` (e.g. ``.../lim/3.0.json``)."""
    return baselines_dir(params) / method / f"{float(budget)}.json"


def evopress_dir(params: Params) -> Path:
    """EvoPress's assignments, ``<budget>.json`` (``evopress``)."""
    return _artifacts(params, "evopress")


def evopress_assignment_path(params: Params, budget: float) -> Path:
    """EvoPress's assignment for ``budget``."""
    return evopress_dir(params) / f"{float(budget)}.json"


def evopress_checkpoint_path(params: Params, budget: float) -> Path:
    """The search in progress for ``budget`` (deleted once its assignment is written)."""
    return _artifacts(params, "checkpoints", f"evopress-{float(budget)}.npz")


def evopress_metrics_path(params: Params) -> Path:
    """The flat metrics of the EvoPress searches."""
    return _metrics(params, "evopress.json")


def seeded_dir(params: Params) -> Path:
    """The seeded search's assignments, ``<budget>.json`` (``seeded``)."""
    return _artifacts(params, "seeded")


def seeded_assignment_path(params: Params, budget: float) -> Path:
    """The seeded search's assignment for ``budget``."""
    return seeded_dir(params) / f"{float(budget)}.json"


def seeded_checkpoint_path(params: Params, budget: float) -> Path:
    """The seeded search in progress for ``budget`` (deleted once its assignment is written)."""
    return _artifacts(params, "checkpoints", f"seeded-{float(budget)}.npz")


def seeded_metrics_path(params: Params) -> Path:
    """The flat metrics of the seeded searches."""
    return _metrics(params, "seeded.json")


def verify_dir(params: Params) -> Path:
    """The verified picks, ``<budget>.json`` (``verify``)."""
    return _artifacts(params, "verify")


def verify_assignment_path(params: Params, budget: float) -> Path:
    """The verified pick for ``budget``."""
    return verify_dir(params) / f"{float(budget)}.json"


def verify_metrics_path(params: Params) -> Path:
    """The flat metrics of the verified picks."""
    return _metrics(params, "verify.json")


# sweep, compare, export
def sweep_cells_dir(params: Params) -> Path:
    """One metrics file per combination, ``<backend>/<method>-<budget>.json`` (``sweep``)."""
    return _metrics(params, "sweep")


def sweep_float_path(params: Params) -> Path:
    """The float model's perplexity under the sweep's protocol (its reference line)."""
    return sweep_cells_dir(params) / "float.json"


def sweep_table_paths(params: Params) -> tuple[Path, Path]:
    """The combined table: flat ``metrics/sweep.json`` and ``plots/sweep.csv``."""
    return _metrics(params, "sweep.json"), Path(params.paths.plots) / "sweep.csv"


def sweep_plot_dir(params: Params) -> Path:
    """The per-backend plots, ``ppl_vs_bits_<backend>.png`` (``sweep``)."""
    return Path(params.paths.plots) / "sweep"


def assembled_cells_dir(params: Params) -> Path:
    """One metrics file per combination measured on the game's database,
    ``<backend>/<method>-<budget>.json`` (``assembled``)."""
    return _metrics(params, "assembled")


def assembled_metrics_path(params: Params) -> Path:
    """The flat metrics of the assembled-against-shipped comparison."""
    return _metrics(params, "assembled.json")


def assembled_result_path(params: Params) -> Path:
    """Its table, beside the results table (``assembled``)."""
    return Path(params.paths.results) / "assembled.md"


def compare_result_paths(params: Params) -> dict[str, Path]:
    """The comparison's files by kind (``compare``)."""
    root = Path(params.paths.results)
    return {
        "json": root / "results.json",
        "markdown": root / "results.md",
        "plot": root / "ppl_vs_stored_bits.png",
    }


def compare_metrics_path(params: Params) -> Path:
    """The flat metrics of the comparison."""
    return _metrics(params, "compare.json")


def export_dir(params: Params) -> Path:
    """The folder the exported model is written to (``export.out``)."""
    return Path(params.export.out)


def export_metrics_path(params: Params) -> Path:
    """The export's figures."""
    return _metrics(params, "export.json")
