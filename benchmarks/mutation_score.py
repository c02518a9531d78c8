"""Mutation score of the core modules that guard correctness and data, with mutmut.

    nice -n 15 python benchmarks/mutation_score.py                 # every module, one at a time
    nice -n 15 python benchmarks/mutation_score.py samplers metrics # some of them

Each module is mutated on its own against a fast, targeted subset of the tests (the table
``MODULES`` below), in a staging folder outside the checkout (``--work``, default a folder
in the system's temporary directory): ``src/medsegdiff_training`` (a copy of the package),
``tests/`` (the chosen test files and the shared conftest) and a ``pyproject.toml`` that
tells mutmut which file to mutate. Results are merged into
``benchmarks/results/mutation_score.json`` (one entry per module, so modules can be run on
different days) and the surviving mutants' diffs are kept beside them in
``benchmarks/results/mutation_survivors/MODULE.txt`` for review. It is CPU heavy (minutes
per module on two cores); it is not part of CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "training" / "medsegdiff_training"
RESULTS = ROOT / "benchmarks" / "results"
GOAL = 0.80

# module -> the test files (paths under tests/) that are its targeted subset
MODULES: dict[str, list[str]] = {
    "samplers": ["training/test_samplers.py", "training/test_sampler_formulas.py"],
    "schedule": [
        "training/test_schedule.py",
        "training/test_samplers.py",
        "training/test_sampler_formulas.py",
        "training/test_mask_loss.py",
    ],
    "corrections": [
        "training/test_corrections.py",
        "faults/test_corrections_store.py",
        "training/test_prompt_finetune.py",
    ],
    "registry": ["training/test_registry.py", "training/test_registry_records.py"],
    "checkpoint": ["training/test_checkpoint.py"],
    "finetune": ["training/test_finetune_fast.py", "training/test_prompt_finetune.py"],
    "preprocess": ["training/test_preprocess.py", "training/test_preprocess_values.py"],
    "metrics": ["training/test_metrics.py"],
}

PYPROJECT = """\
[tool.mutmut]
source_paths = ["src/medsegdiff_training"]
only_mutate = ["src/medsegdiff_training/{module}.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
pytest_add_cli_args_test_selection = ["tests"]
timeout_multiplier = 5.0
timeout_constant = 20.0
use_git_change_detection = false

[tool.pytest.ini_options]
addopts = ["--import-mode=importlib", "--strict-markers"]
markers = ["gui: needs a display", "slow: takes more than about 10 seconds"]
filterwarnings = ["error"]
"""


def copy_tests(module: str, folder: Path) -> None:
    """The module's test files (and their folders' conftest.py) into a staged ``folder``."""
    shutil.copy2(ROOT / "tests" / "conftest.py", folder / "tests" / "conftest.py")
    for name in MODULES[module]:
        target = folder / "tests" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "tests" / name, target)
        if (ROOT / "tests" / name).with_name("conftest.py").is_file():  # the folder's fixtures
            shutil.copy2((ROOT / "tests" / name).with_name("conftest.py"), target.with_name("conftest.py"))


def stage(module: str, work: Path) -> Path:
    """A folder laid out as mutmut expects (src/ + tests/ + pyproject.toml) for one module."""
    folder = work / module
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(
        PACKAGE, folder / "src" / "medsegdiff_training", ignore=shutil.ignore_patterns("__pycache__")
    )
    (folder / "tests").mkdir(parents=True)
    copy_tests(module, folder)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(module=module))
    return folder


def _mutmut(folder: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment["OMP_NUM_THREADS"] = "1"
    environment["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no napari/Qt plugins: core tests only
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


STATUS = re.compile(r"^\s*(\S+): (\w[\w ]*)$")


def _status(folder: Path) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    listing = _mutmut(folder, "results", "--all", "true")
    status: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        match = STATUS.match(line)
        if match and "__mutmut_" in match.group(1):
            status[match.group(1)] = match.group(2).strip()
    return status, listing


def rerun_survivors(module: str, work: Path, jobs: int) -> subprocess.CompletedProcess:
    """Test an earlier run's survivors again against the current tests (the module unchanged)."""
    folder = work / module
    staged = folder / "src" / "medsegdiff_training" / f"{module}.py"
    if not staged.is_file():
        raise SystemExit(f"no earlier run of {module} in {work}: run it whole first")
    if staged.read_bytes() != (PACKAGE / f"{module}.py").read_bytes():
        raise SystemExit(f"{module}.py changed since its run in {work}: run it whole again")
    copy_tests(module, folder)
    status, _ = _status(folder)
    names = sorted(n for n, v in status.items() if v in ("survived", "no tests", "not checked"))
    return _mutmut(folder, "run", "--max-children", str(jobs), *names)


def run_module(module: str, work: Path, jobs: int, rerun: bool = True, survivors: bool = False) -> dict:
    """Mutate one module (``rerun=False``: only read the results of an earlier run in ``work``;
    ``survivors``: test the earlier run's survivors and unchecked mutants again, against the
    current tests)."""
    folder = work / module
    seconds = None
    run = None
    if survivors:
        run = rerun_survivors(module, work, jobs)
    elif rerun:
        folder = stage(module, work)
        started = datetime.datetime.now(datetime.timezone.utc)
        run = _mutmut(folder, "run", "--max-children", str(jobs))
        seconds = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
    status, listing = _status(folder)
    if not status:
        raise RuntimeError(
            f"mutmut gave no results for {module}:\n{listing.stdout[-3000:]}\n{listing.stderr[-3000:]}"
        )
    if set(status.values()) == {"not checked"} and run is not None:  # e.g. a test failed before any ran
        raise RuntimeError(
            f"mutmut checked no mutant of {module}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    counts: dict[str, int] = {}
    for value in status.values():
        counts[value] = counts.get(value, 0) + 1
    survivors = sorted(name for name, value in status.items() if value in ("survived", "no tests"))
    diffs = [_mutmut(folder, "show", name).stdout for name in survivors]
    survivors_folder = RESULTS / "mutation_survivors"
    survivors_folder.mkdir(parents=True, exist_ok=True)
    (survivors_folder / f"{module}.txt").write_text("\n".join(diffs))
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("caught by type check", 0)
    scored = sum(n for key, n in counts.items() if key not in ("skipped", "not checked"))
    return {
        "module": f"medsegdiff_training/{module}.py",
        "tests": [f"tests/{name}" for name in MODULES[module]],
        "mutants": len(status),
        "counts": counts,
        "killed": killed,
        "score": round(killed / scored, 4) if scored else None,
        "survivors": survivors,
        "seconds": seconds,
    }


README_START, README_END = "<!-- mutation:start -->", "<!-- mutation:end -->"


def readme_table(merged: dict) -> str:
    """The docs/development.md block: one row per module, killed / mutants and the score against the goal."""
    lines = [
        f"| module | tests | mutants | killed | survived | score (goal {GOAL:.0%}) | date |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for module in MODULES:
        result = merged["modules"].get(module)
        if result is None:
            lines.append(f"| `{module}.py` | {', '.join(MODULES[module])} | not run yet | | | | |")
            continue
        tests = ", ".join(Path(t).name for t in result["tests"])
        unchecked = result["counts"].get("not checked", 0)
        survived = result["mutants"] - result["killed"] - unchecked - result["counts"].get("skipped", 0)
        mark = "" if result["score"] is not None and result["score"] >= GOAL else " (below goal)"
        score = "no result" if result["score"] is None else f"{result['score']:.1%}"
        if unchecked:  # a run stopped early: the score is of the mutants that were checked
            mark += f" (partial: {unchecked} not checked)"
        lines.append(
            f"| `{module}.py` | {tests} | {result['mutants']} | {result['killed']} | {survived} | "
            f"{score}{mark} | {result['environment']['date']} |"
        )
    return "\n".join(lines)


def write_readme(merged: dict) -> None:
    readme = ROOT / "docs" / "development.md"
    text = readme.read_text()
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        readme.write_text(f"{head}{README_START}\n{readme_table(merged)}\n{README_END}{tail}")


def environment(jobs: int) -> dict:
    import mutmut

    return {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "mutmut": getattr(mutmut, "__version__", "?"),
        "workers": jobs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medsegdiff-mutation")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument(
        "--collect-only", action="store_true", help="read the results of an earlier run in --work"
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="test the survivors (and unchecked mutants) of the earlier run in --work again, "
        "against the current tests (the module must not have changed)",
    )
    parser.add_argument("--readme", action="store_true", help="only rewrite the table in docs/development.md")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}: choose from {', '.join(MODULES)}")
    output = RESULTS / "mutation_score.json"
    merged = json.loads(output.read_text()) if output.is_file() else {"goal": GOAL, "modules": {}}
    if args.readme:
        write_readme(merged)
        return 0
    for module in args.modules or list(MODULES):
        print(f"mutating {module} ...", flush=True)
        result = run_module(
            module, args.work, args.jobs, rerun=not args.collect_only, survivors=args.survivors
        )
        if result["seconds"] is None and module in merged["modules"]:
            result["seconds"] = merged["modules"][module].get("seconds")
        result["environment"] = environment(args.jobs)
        # re-read: another module's run may have finished since (one process per module is fine)
        merged = json.loads(output.read_text()) if output.is_file() else {"goal": GOAL, "modules": {}}
        merged["modules"][module] = result
        merged["goal"] = GOAL
        output.write_text(json.dumps(merged, indent=2) + "\n")
        write_readme(merged)
        print(
            f"  {module}: {result['killed']}/{result['mutants']} killed, score {result['score']}", flush=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
