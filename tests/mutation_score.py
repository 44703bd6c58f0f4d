"""Print the mutation score of ``make mutate``: killed / checked mutants, per module and overall.

Reads ``mutmut results --all true`` (one ``name: status`` line per mutant). Killed: ``killed``, ``timeout``,
``segfault`` and ``caught by type check``; survived: ``survived``, ``no tests`` and ``suspicious``; mutants
``not checked`` (or ``skipped``) are left out of the score and counted apart. Exit status 0 always: the score is
a measurement; tests/MUTANTS.md lists the survivors and why they are accepted.

    python tests/mutation_score.py [--survivors]
    python tests/mutation_score.py --refresh    (before ``mutmut run``; ``make mutate`` does it)

``--refresh`` deletes the copies in ``mutants/`` of the library files that are not mutated: mutmut copies
such a file once and never again, so a cache older than a change to, say, ``core/recipes.py`` would run the
tests against the old file. mutmut copies them afresh; the mutated files it regenerates itself when their
source is newer, keeping the verdicts of functions whose code did not change.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests", "suspicious"}


def results() -> list[tuple[str, str]]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                         text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            rows.append((name, status.strip()))
    return rows


def module_of(name: str) -> str:
    """``tutorial_lib.agents.mppi.xǁMPPIPlannerǁ__call____mutmut_3`` -> ``tutorial_lib.agents.mppi``."""
    return name.rsplit(".", 1)[0]


def refresh(root: Path = Path(".")) -> list[str]:
    """Delete ``mutants/``'s copies of the source files that ``[tool.mutmut] only_mutate`` leaves out."""
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    mutated = set(cfg["only_mutate"])
    removed = []
    for source in cfg["source_paths"]:
        for copy in sorted((root / "mutants" / source).rglob("*.py")):
            rel = copy.relative_to(root / "mutants").as_posix()
            if rel not in mutated:
                copy.unlink()
                removed.append(rel)
    return removed


def main() -> None:
    if "--refresh" in sys.argv[1:]:
        removed = refresh()
        print(f"mutants/: {len(removed)} copies of files that are not mutated removed, to be copied afresh")
        return
    rows = results()
    per: dict[str, Counter] = defaultdict(Counter)
    for name, status in rows:
        kind = "killed" if status in KILLED else "survived" if status in SURVIVED else "unchecked"
        per[module_of(name)][kind] += 1
    total = Counter()
    print(f"{'module':45s} {'killed':>7s} {'checked':>8s} {'score':>7s} {'unchecked':>10s}")
    for module in sorted(per):
        c = per[module]
        total.update(c)
        checked = c["killed"] + c["survived"]
        score = f"{100 * c['killed'] / checked:6.1f}%" if checked else "     -"
        print(f"{module:45s} {c['killed']:7d} {checked:8d} {score:>7s} {c['unchecked']:10d}")
    checked = total["killed"] + total["survived"]
    score = f"{100 * total['killed'] / checked:.1f}%" if checked else "-"
    print(f"mutation score: {total['killed']} killed of {checked} checked mutants = {score}"
          f" ({total['unchecked']} not checked)")
    if "--survivors" in sys.argv[1:]:
        for name, status in rows:
            if status in SURVIVED:
                print(f"{status}: {name}")


if __name__ == "__main__":
    main()
