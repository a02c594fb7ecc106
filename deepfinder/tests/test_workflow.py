"""The demo's chain: progress read from the protocols' run logs, the project it creates, and the
report comparing ways of picking."""

import numpy as np
from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig
from pyworkflow.project import Manager

from deepfinder.core.particles import ParticleTable
from deepfinder.workflow import (
    PROGRESS_CHARACTERS,
    TOMOGRAPHY_VIEW,
    create_project,
    duration,
    picking_report,
    picks_outside,
    progress_line,
)

# The head of a training run's logs/run.stdout, as Scipion wrote it (colour codes included).
TRAIN_LOG_HEAD = """\
Logging configured. STDOUT --> /tmp/demo/Runs/000611_DeepFinderProtTrain/logs/run.stdout , STDERR --> ...
WARNING!!_condaActivationCmd: CONDA_ACTIVATION_CMD variable not defined. Relying on conda being in the PATH
Running protocol using the <pyworkflow.protocol.executor.StepExecutor object at 0x7f88d3238c90> executor.
\x1b[32mRESUMING PROTOCOL -----------------\x1b[0m
Protocol starts
Hostname: localhost
PID: 7525
pyworkflow: 3.11.7
plugin: deepfinder - https://github.com/scipion-em/scipion-em-deepfinder
currentDir: /tmp/demo
workingDir: Runs/000611_DeepFinderProtTrain
runMode: Continue
Serial execution
 Running steps\x20
"""
TRAIN_STEP_STARTED = "\x1b[35mSTARTED\x1b[0m: trainStep, step 1, time 2026-12-02 03:11:42.885787\n"
TRAIN_EPOCH = """\
epoch 1/2 step 15/16: loss 1.3272, 3.06 s/step
epoch 1/2 step 16/16: loss 1.3104, 3.03 s/step
epoch 1: train loss 1.3104, val loss 1.0676, val F1 per class 0.00 0.01 0.00 0.00 (mean 0.002), \
51 s (0.1 s waiting for data), best epoch 1
epoch 2/2 step 1/16: loss 1.0049, 2.60 s/step
"""
SEGMENT_LOG_TAIL = """\
 Running steps\x20
\x1b[35mSTARTED\x1b[0m: segmentStep, step 1, time 2026-12-02 03:13:42.501356
segment: 1/1 tiles of (80, 84, 84) (1/1 rows) done (36 s)
Getting the dimensions for the first item: Runs/000674_DeepFinderProtSegment/extra/tomo_003_labels.mrc
\x1b[35mFINISHED\x1b[0m: segmentStep, step 1, time 2026-12-02 03:14:33.122878
\x1b[35mSTARTED\x1b[0m: closeOutputStep, step 2, time 2026-12-02 03:14:33.149697
"""
PROTOCOL_END = """\
\x1b[35mFINISHED\x1b[0m: closeOutputStep, step 2, time 2026-12-02 03:14:33.163661
*** Last status is finished\x20
Cleaning temp folder....
Nothing to clean up
\x1b[32m------------------- PROTOCOL FINISHED\x1b[0m
"""


def test_nothing_to_report_before_the_first_step():
    assert progress_line("") is None
    assert progress_line(TRAIN_LOG_HEAD) is None


def test_the_step_that_started_until_it_writes_a_line():
    assert progress_line(TRAIN_LOG_HEAD + TRAIN_STEP_STARTED) == "trainStep (step 1) started"
    assert progress_line(SEGMENT_LOG_TAIL) == "closeOutputStep (step 2) started"


def test_scipion_bookkeeping_after_a_step_is_not_progress():
    assert progress_line(SEGMENT_LOG_TAIL + PROTOCOL_END) == "closeOutputStep (step 2) finished"


def test_the_latest_line_of_the_engine():
    assert progress_line(TRAIN_LOG_HEAD + TRAIN_STEP_STARTED + TRAIN_EPOCH) == (
        "epoch 2/2 step 1/16: loss 1.0049, 2.60 s/step"
    )
    summary = progress_line(TRAIN_LOG_HEAD + TRAIN_STEP_STARTED + TRAIN_EPOCH.rsplit("epoch 2/2", 1)[0])
    assert summary.startswith("epoch 1: train loss 1.3104, val loss 1.0676, val F1 per class")
    assert len(summary) == PROGRESS_CHARACTERS and summary.endswith("...")


def test_durations_read_as_minutes_and_seconds():
    assert duration(4.4) == "4 s"
    assert duration(125) == "2 min 05 s"


def protocols_listed(view) -> set[str]:
    return {item.value for item in view.childs if item.tag == "protocol"} | {
        name for item in view.childs for name in protocols_listed(item)
    }


def test_the_project_opens_in_the_tomography_view(tmp_path):
    create_project("DeepFinderViewTest")
    project = Manager().loadProject("DeepFinderViewTest")
    assert project.getProtocolView() == TOMOGRAPHY_VIEW
    # The views the GUI offers (without a site protocols.conf): the saved one is among them, with ours.
    views = ProtocolTreeConfig.load(project.getDomain(), str(tmp_path / "protocols.conf"))
    assert "DeepFinderProtTrain" in protocols_listed(views[TOMOGRAPHY_VIEW])


# A 10-voxel cube whose region of interest is its lower half (z < 5); two true particles in it.
SLAB = {"t": np.zeros((10, 10, 10), dtype=bool)}
SLAB["t"][:5] = True
REFERENCE = ParticleTable(tomo="t", class_id=[1, 2], xyz=[[2, 2, 2], [7, 7, 2]])
# One pick on each true particle, and a ribosome pick on the gold above the slab (z = 8).
ALL_PICKS = ParticleTable(tomo="t", class_id=[1, 2, 1], xyz=[[2, 2, 2], [7, 7, 3], [5, 5, 8]])
NAMES = {1: "ribosome", 2: "rod"}


def test_picks_outside_the_region_of_their_own_tomogram():
    other = ParticleTable(tomo="u", class_id=1, xyz=[[5, 5, 8]])
    np.testing.assert_array_equal(picks_outside(ALL_PICKS, SLAB), [False, False, True])
    np.testing.assert_array_equal(picks_outside(other, SLAB), [False], "a tomogram without a region")


def test_the_report_has_a_table_and_the_picks_outside_the_slab_per_way():
    ways = {"no mask": ALL_PICKS, "mask": ALL_PICKS.select(np.array([True, True, False]))}
    report = picking_report(ways, REFERENCE, SLAB, NAMES, tolerance_voxels=2)
    no_mask, mask, summary = report.split("\n\n")
    assert no_mask.startswith("no mask:\nclass") and mask.startswith("mask:\nclass")
    assert no_mask.endswith("picks outside the slab: 1 (ribosome 1, rod 0)")
    assert mask.endswith("picks outside the slab: 0 (ribosome 0, rod 0)")
    assert "ribosome       2      1      1     0.500   1.000  0.667" in no_mask
    assert summary.splitlines() == [
        "F1        ribosome       rod       all  outside",
        "no mask       0.67      1.00      0.80        1",
        "mask          1.00      1.00      1.00        0",
    ]
