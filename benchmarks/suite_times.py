"""Where the test suite's time goes: seconds per test module, from pytest's JUnit XML report.

Run the tests with ``--junitxml``, then read the report::

    bash scripts/test.sh -m "not slow" --junitxml=times.xml
    python benchmarks/suite_times.py times.xml

Prints a Markdown table, slowest module first: the module, its tests, and the seconds of its
tests' setup, call and teardown (pytest's per-test ``time``). With ``-n 2`` the modules ran side
by side, so the seconds add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path


def seconds_per_module(report: Path) -> dict[str, tuple[int, float]]:
    """The number of tests and their seconds in each module of the JUnit XML ``report``.

    Parameters
    ----------
    report : Path
        A report written by ``pytest --junitxml``.

    Returns
    -------
    dict
        Module (``deepfinder.tests.test_x``) -> (tests, seconds).
    """
    tests, seconds = defaultdict(int), defaultdict(float)
    for case in ElementTree.parse(report).iter("testcase"):
        # A unittest class adds its name to the module's: keep the module.
        module = ".".join(part for part in case.get("classname", "").split(".") if not part[:1].isupper())
        tests[module] += 1
        seconds[module] += float(case.get("time", 0))
    return {module: (tests[module], seconds[module]) for module in tests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="pytest's JUnit XML report (--junitxml)")
    args = parser.parse_args()
    if not args.report.is_file():
        parser.error(f"{args.report}: no such report; write one with pytest --junitxml={args.report}")
    modules = seconds_per_module(args.report)
    print("| module | tests | seconds |\n|---|---|---|")
    for module, (count, seconds) in sorted(modules.items(), key=lambda item: -item[1][1]):
        print(f"| {module.rsplit('.', 1)[-1]} | {count} | {seconds:.0f} |")
    total = sum(seconds for _, seconds in modules.values())
    print(f"| all | {sum(count for count, _ in modules.values())} | {total:.0f} |")


if __name__ == "__main__":
    main()
