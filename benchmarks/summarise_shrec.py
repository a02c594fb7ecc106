"""Summarise ``bench_shrec.py`` reports (runs with several seeds) in markdown tables.

    python benchmarks/summarise_shrec.py REPORT.json [REPORT.json ...] [--rule occupancy|distance]
                                         [--classes-from REPORT.json ... --classes NAME ...]
                                         [--by-layout]

For each targets kind: per class, the F1 mean and spread (min-max) over the runs and held-out layouts,
for each imaging setting and mode (plain, scores averaged over 4 rotations); per class, the F1 of each
other setting minus the first setting's (the training data's), paired by run and layout; and the class
confusion by occupancy summed over the runs and layouts, per setting and mode.

``--classes-from`` takes the rows of the ``--classes`` from other reports, the first of them paired
with the first report and so on (e.g. the same seed trained at another sampling), for each held-out
tomogram and mode both scored: each class's picks then come from one model, so its scores are
those the two models would give together. The overall row becomes the mean over the classes, and
no confusion is printed, since it would mix the two models' detections.

``--by-layout`` prints instead, for each imaging setting and mode, a column per report whose cells
are the F1 of each held-out layout (``layout 7 / layout 8``), with the class mean of each, and the
lowest class score of each report: a comparison of methods scoring by scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MODES = {"plain": "plain", "rotations": "4 rotations averaged"}


def report_scores(report: list[dict], source: str) -> list[dict]:
    """The scores of one report (one per targets kind, held-out tomogram and mode), each marked with
    its run (``source``, e.g. the report's path, and the targets kind)."""
    return [
        {**scored, "run": f"{source} {entry['targets']}", "targets": entry["targets"]}
        for entry in report
        for scored in entry["scores"]
    ]


def load_scores(paths: list[Path]) -> list[dict]:
    """The scores of every report; refuses reports of the older bench_shrec.py (one held-out tomogram)."""
    scores = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        if not all("scores" in entry for entry in report):
            raise SystemExit(
                f"{path} was written by an older bench_shrec.py, without per-layout scores: "
                "re-score its model with bench_shrec.py --model"
            )
        scores += report_scores(report, str(path))
    return scores


def take_classes(scores: list[dict], donor: list[dict], classes: set[str]) -> list[dict]:
    """``scores`` of one run with the rows of ``classes`` taken from ``donor`` (another run's scores
    of the same held-out tomograms), for each tomogram and mode both scored; the overall row is the
    mean F1 over the classes."""
    donor_by_key = {(s["layout"], s["setting"], s["mode"]): s for s in donor}
    combined = []
    for scored in scores:
        other = donor_by_key.get((scored["layout"], scored["setting"], scored["mode"]))
        if other is None:
            continue
        entry = {**scored, "confusion": None}
        for rule in ("occupancy", "distance"):
            taken = {row["name"]: row for row in other[rule]}
            rows = [taken[row["name"]] if row["name"] in classes else row for row in scored[rule]]
            per_class = [row for row in rows if row["class_id"] is not None]
            mean = {
                "class_id": None,
                "name": "class mean",
                "f1": float(np.mean([r["f1"] for r in per_class])),
            }
            entry[rule] = per_class + [mean]
        combined.append(entry)
    return combined


def spread(values: list[float]) -> str:
    """Mean and, over more than one value, min-max."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def f1_by_class(scored: dict, rule: str, classes_only: bool = False) -> dict[str, float]:
    """F1 by row name of one scoring; ``classes_only`` leaves out the rows over all classes."""
    return {row["name"]: row["f1"] for row in scored[rule] if not classes_only or row["class_id"] is not None}


def f1_table(scores: list[dict], rule: str) -> list[str]:
    """Markdown: per class (rows) the F1 mean (min-max) for each setting and mode (columns)."""
    groups = list(dict.fromkeys((s["setting"], s["mode"]) for s in scores))
    names = list(f1_by_class(scores[0], rule))
    lines = [
        "| Class | " + " | ".join(f"{setting}, {MODES[mode]}" for setting, mode in groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for name in names:
        cells = [
            spread([f1_by_class(s, rule)[name] for s in scores if (s["setting"], s["mode"]) == group])
            for group in groups
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def difference_table(scores: list[dict], rule: str) -> list[str]:
    """Markdown: per class the F1 of each other setting minus the first one's, mean (min-max) over
    the (run, layout) pairs scored under both, for each mode."""
    settings = list(dict.fromkeys(s["setting"] for s in scores))
    modes = list(dict.fromkeys(s["mode"] for s in scores))
    by_key = {(s["run"], s["layout"], s["setting"], s["mode"]): f1_by_class(s, rule) for s in scores}
    columns = [(other, mode) for other in settings[1:] for mode in modes]
    names = list(f1_by_class(scores[0], rule))
    lines = [
        "| Class | "
        + " | ".join(f"{other} - {settings[0]}, {MODES[mode]}" for other, mode in columns)
        + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in names:
        cells = []
        for other, mode in columns:
            pairs = [
                (f1[name], by_key[(run, layout, settings[0], mode)][name])
                for (run, layout, setting, m), f1 in by_key.items()
                if setting == other and m == mode and (run, layout, settings[0], mode) in by_key
            ]
            cells.append(spread([a - b for a, b in pairs]) if pairs else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def confusion_table(scores: list[dict]) -> list[str]:
    """Markdown: the confusion counts summed over ``scores``; rows detected, columns lying on."""
    counts = np.sum([np.array(s["confusion"]) for s in scores], axis=0)
    names = {row["class_id"]: row["name"] for row in scores[0]["occupancy"] if row["class_id"] is not None}
    labels = ["background"] + [names.get(k, str(k)) for k in range(1, len(counts))]
    lines = ["| detected \\ on | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for label, row in zip(labels[1:], counts[1:]):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    return lines


def layout_table(scores: list[dict], rule: str) -> list[str]:
    """Markdown: per class (rows) and run (columns) the F1 of each held-out layout, ``a / b`` in the
    order of the layouts, then the class mean and the lowest class of each run and layout."""
    runs = list(dict.fromkeys(s["run"] for s in scores))
    layouts = sorted({s["layout"] for s in scores})
    class_f1 = {(s["run"], s["layout"]): f1_by_class(s, rule, classes_only=True) for s in scores}
    names = list(next(iter(class_f1.values())))
    per_class = {
        run: [class_f1[run, layout] for layout in layouts if (run, layout) in class_f1] for run in runs
    }

    def row(label: str, cell) -> str:
        cells = (" / ".join(cell(f1) for f1 in per_class[run]) for run in runs)
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        f"| Class (layout {' / '.join(map(str, layouts))}) | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    lines += [row(name, lambda f1, name=name: f"{f1[name]:.3f}") for name in names]
    lines.append(row("class mean", lambda f1: f"{np.mean(list(f1.values())):.3f}"))
    lines.append(row("lowest", lambda f1: "{} {:.3f}".format(*min(f1.items(), key=lambda item: item[1]))))
    return lines


def print_by_layout(scores: list[dict], rule: str = "occupancy") -> None:
    """Print :func:`layout_table` for each targets kind, imaging setting and mode in ``scores``."""
    for targets, setting, mode in dict.fromkeys((s["targets"], s["setting"], s["mode"]) for s in scores):
        group = [s for s in scores if (s["targets"], s["setting"], s["mode"]) == (targets, setting, mode)]
        print(f"\n### {targets} targets, {setting}, {MODES[mode]}: F1 ({rule} rule) by held-out layout\n")
        print("\n".join(layout_table(group, rule)))


def print_summary(scores: list[dict], rule: str = "occupancy") -> None:
    """Print the markdown tables of :func:`f1_table`, :func:`difference_table` and
    :func:`confusion_table` for each targets kind in ``scores``."""
    for targets in dict.fromkeys(s["targets"] for s in scores):
        chosen = [s for s in scores if s["targets"] == targets]
        runs = list(dict.fromkeys(s["run"] for s in chosen))
        layouts = sorted({s["layout"] for s in chosen})
        over = f"{len(runs)} run(s) x held-out layouts {', '.join(map(str, layouts))}"
        print(f"\n### {targets} targets: F1 ({rule} rule), mean (min-max) over {over}\n")
        print("\n".join(f1_table(chosen, rule)))
        if len({s["setting"] for s in chosen}) > 1:
            print(
                f"\n### {targets} targets: F1 difference between imaging settings ({rule} rule), "
                f"over {over}\n"
            )
            print("\n".join(difference_table(chosen, rule)))
        if any(s["confusion"] is None for s in chosen):
            continue
        for setting, mode in dict.fromkeys((s["setting"], s["mode"]) for s in chosen):
            group = [s for s in chosen if (s["setting"], s["mode"]) == (setting, mode)]
            print(
                f"\n### {targets} targets, {setting}, {MODES[mode]}: detections (rows) by the class of "
                f"the particle they lie on (columns), summed over {over}\n"
            )
            print("\n".join(confusion_table(group)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="report*.json files of bench_shrec.py")
    parser.add_argument("--rule", choices=("occupancy", "distance"), default="occupancy")
    parser.add_argument(
        "--classes-from",
        type=Path,
        nargs="+",
        default=[],
        help="reports to take the --classes from, one per report, in the same order",
    )
    parser.add_argument("--classes", nargs="+", default=[], help="class names taken from --classes-from")
    parser.add_argument(
        "--by-layout",
        action="store_true",
        help="a column per report, the F1 of each held-out layout in each cell",
    )
    args = parser.parse_args()
    summarise = print_by_layout if args.by_layout else print_summary
    if bool(args.classes_from) != bool(args.classes):
        parser.error("--classes-from and --classes go together")
    if args.classes_from and len(args.classes_from) != len(args.reports):
        parser.error(f"--classes-from: give one report per report ({len(args.reports)})")
    if not args.classes_from:
        summarise(load_scores(args.reports), args.rule)
        return 0
    scores = []
    for report, donor in zip(args.reports, args.classes_from):
        scores += take_classes(load_scores([report]), load_scores([donor]), set(args.classes))
    summarise(scores, args.rule)
    return 0


if __name__ == "__main__":
    sys.exit(main())
