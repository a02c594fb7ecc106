"""Control for the coarse model: two models of one sampling (e.g. two training seeds) averaged.

    python benchmarks/shrec_model_pair.py --work W --runs RUN_A RUN_B [--bin 1|2] [--held-out 7 8]

Averages the class scores of the last checkpoints of ``model_shapes_dice_cross_entropy_<run>`` of two
``bench_shrec.py`` runs (in ``W``, or ``W/bin2`` with ``--bin 2``), each with the four rotations
averaged, on each held-out tomogram of the training imaging, clusters and scores the result as
``bench_shrec.py`` does, and writes ``report_pair_<RUN_A>_<RUN_B>.json`` in its report format
(``summarise_shrec.py`` reads it). It holds both models' float32 scores of a whole tomogram in memory
(about 5.5 GB at full size). Skips (exit 0) when the SHREC'19 data is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from bench_shrec import cluster, held_out_name, score, score_record
from shrec_data import add_shrec_dir_option, find_shrec_dir


def main() -> int:
    from deepfinder.core.checkpoints import last_checkpoint
    from deepfinder.core.io import read_volume
    from deepfinder.core.model import load_model
    from deepfinder.core.segment import predict_scores, unbin_positions
    from deepfinder.core.settings import SegmentationSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="the bench_shrec.py work folder")
    parser.add_argument("--runs", nargs=2, required=True, help="the --name of two bench_shrec.py runs")
    parser.add_argument("--bin", type=int, choices=(1, 2), default=1, help="the runs' --bin")
    parser.add_argument("--held-out", type=int, nargs="+", default=[7, 8])
    add_shrec_dir_option(parser)
    args = parser.parse_args()
    if find_shrec_dir(args.shrec_dir) is None:
        return 0
    work = args.work
    data = work if args.bin == 1 else work / "bin2"
    classes = json.loads((work / "classes.json").read_text())
    data_classes = json.loads((data / "classes.json").read_text())
    models = [
        load_model(last_checkpoint(data / f"model_shapes_dice_cross_entropy_{run}"), precision="auto")[0]
        for run in args.runs
    ]
    settings = SegmentationSettings(average_rotations=True)
    entry = {
        "targets": "shapes",
        "name": "pair_" + "_".join(args.runs),
        "arguments": vars(args),
        "scores": [],
    }
    for layout in args.held_out:
        name = held_out_name(layout, "bench")
        volume = np.asarray(read_volume(data / f"{name}.mrc", mmap=False), dtype=np.float32)
        scores = predict_scores(volume, models[0], settings)
        scores += predict_scores(volume, models[1], settings)
        scores /= 2
        found = cluster(
            scores.argmax(axis=-1).astype(np.uint8),
            data_classes,
            name,
            {c["id"]: scores[..., c["id"]] for c in data_classes},
        )
        if args.bin == 2:
            found = dataclasses.replace(found, xyz=unbin_positions(found.xyz))
        scored = score(work, name, found, classes)
        entry["scores"].append(
            {
                "layout": layout,
                "setting": "bench",
                "name": name,
                "mode": "rotations",
                **score_record(scored),
            }
        )
        print(name, {row.name: round(row.f1, 3) for row in scored["occupancy"]}, flush=True)
    report = work / f"report_{entry['name']}.json"
    report.write_text(json.dumps([entry], indent=1, default=str))
    print(f"Report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
