"""The tomogram simulator: determinism, ground truth, image formation, outputs, errors."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from deepfinder.core.cli import main
from deepfinder.core.io import read_volume, read_voxel_size, write_volume
from deepfinder.core.particles import ParticleTable, rotations_from_euler_zxz
from deepfinder.core.shapes import procedural_shape, rotate_density
from deepfinder.core.simulate import (
    PRESETS,
    SHREC19_CLASSES,
    SHREC19_DIR_VARIABLE,
    SpecimenParameters,
    TiltSeriesParameters,
    image_tilt_series,
    occupied_space,
    shrec19_dir,
    shrec19_layout,
    shrec19_shapes,
    simulate_dataset,
    simulate_tomogram,
)
from deepfinder.core.tables import csv as particle_csv

VOXEL_SIZE = 12.0
SPECIMEN = SpecimenParameters(
    shape_zyx=(48, 80, 80),
    voxel_size=VOXEL_SIZE,
    particles_per_class=6,
    slab_thickness_voxels=40,
    n_vesicles=1,
    n_gold_beads=1,
    carbon_edge=True,
)
TILTS = TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=1.0)


@pytest.fixture(scope="module")
def shapes():
    return [procedural_shape(name, VOXEL_SIZE) for name in ("ribosome", "ring", "rod")]


@pytest.fixture(scope="module")
def simulated(shapes):
    return simulate_tomogram(shapes, SPECIMEN, TILTS, seed=3, name="t")


def test_same_seed_same_tomogram(shapes, simulated):
    again = simulate_tomogram(shapes, SPECIMEN, TILTS, seed=3, name="t")
    assert np.array_equal(again.tomogram, simulated.tomogram)
    assert np.array_equal(again.occupancy, simulated.occupancy)
    assert np.allclose(again.particles.rotation, simulated.particles.rotation)
    other = simulate_tomogram(shapes, SPECIMEN, TILTS, seed=4)
    assert not np.allclose(other.particles.xyz, simulated.particles.xyz)


def _centred(volume, size):
    """Crop or zero-pad a centred cube to edge ``size``."""
    difference = (size - volume.shape[0]) // 2
    if difference >= 0:
        return np.pad(volume, difference)
    return volume[-difference:difference, -difference:difference, -difference:difference]


def test_particles_are_where_the_table_says(shapes, simulated):
    table = simulated.particles
    assert len(table) == 18 and sorted(np.bincount(table.class_id)[1:]) == [6, 6, 6]
    assert np.all(table.tomo == "t")
    own, best_other = [], []
    for class_id, xyz, rotation in zip(table.class_id, table.xyz, table.rotation):
        size = shapes[class_id - 1].density.shape[0]
        half = size // 2
        padded = np.pad(simulated.density, half)
        centre = np.round(xyz[::-1]).astype(int) + half
        crop = padded[tuple(slice(c - half, c + half + 1) for c in centre)]
        templates = [_centred(rotate_density(shape.density, rotation), size) for shape in shapes]
        # Compare on the particle's own footprint: neighbours and gold may share its box.
        region = ndimage.binary_dilation(templates[class_id - 1] > 0.05)
        scores = [np.corrcoef(crop[region], template[region])[0, 1] for template in templates]
        own.append(scores[class_id - 1])
        best_other.append(max(s for i, s in enumerate(scores) if i != class_id - 1))
    assert np.median(own) > 0.95 and np.min(own) > 0.8
    assert np.all(np.array(own) > np.array(best_other) + 0.1)
    # Row i of the table owns occupancy id i + 1: its mask, labelled with its class, and its pores.
    for row, class_id in enumerate(table.class_id):
        inside = simulated.occupancy == row + 1
        assert class_id in simulated.labels[inside] and set(np.unique(simulated.labels[inside])) <= {
            0,
            class_id,
        }
    assert simulated.occupancy.max() == len(table)
    assert np.all(simulated.occupancy[simulated.labels > 0] > 0)


def test_particles_are_dark(simulated):
    smooth = ndimage.gaussian_filter(simulated.tomogram, 1.5)
    background = smooth[simulated.density == 0]
    for class_id in (1, 2, 3):
        contrast = (smooth[simulated.labels == class_id].mean() - background.mean()) / background.std()
        assert contrast < -1.0


def test_a_lone_particle_is_elongated_along_z():
    globule = procedural_shape("globule", VOXEL_SIZE)
    layout = ParticleTable(tomo="", class_id=1, xyz=[[32.0, 32.0, 24.0]])
    specimen = SpecimenParameters(shape_zyx=(48, 64, 64), voxel_size=VOXEL_SIZE)
    result = simulate_tomogram([globule], specimen, TiltSeriesParameters(snr=100.0), layout=layout)
    smooth = ndimage.gaussian_filter(result.tomogram, 1.0)
    dark = smooth < 0.5 * smooth[24, 32, 32]
    labelled, _ = ndimage.label(dark)
    image_extent = np.ptp(np.nonzero(labelled == labelled[24, 32, 32]), axis=1) + 1
    true_extent = np.ptp(np.nonzero(result.labels), axis=1) + 1
    stretch = image_extent / true_extent  # z, y, x
    assert stretch[0] > 1.3 * stretch[2]
    assert stretch[1] == pytest.approx(stretch[2], abs=0.25)  # none along the tilt axis


def test_reconstruction_has_a_missing_wedge(simulated):
    power = np.abs(np.fft.fftn(simulated.tomogram)) ** 2
    kz, _, kx = np.meshgrid(*(np.fft.fftfreq(n) for n in simulated.tomogram.shape), indexing="ij")
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))  # 90 deg = along kz
    band = (np.hypot(kz, kx) > 0.05) & (np.hypot(kz, kx) < 0.3)
    missing = power[band & (angle > 65)].mean()
    measured = power[band & (angle < 55)].mean()
    assert missing < 0.05 * measured


def test_lower_snr_is_harder_to_see(shapes):
    def visibility(snr, noise):
        result = simulate_tomogram(shapes, SPECIMEN, TiltSeriesParameters(snr=snr, noise=noise), seed=1)
        return np.corrcoef(result.tomogram.ravel(), -ndimage.gaussian_filter(result.density, 1).ravel())[0, 1]

    for noise in ("gaussian", "poisson"):
        assert visibility(10.0, noise) > visibility(0.1, noise) + 0.1 > visibility(0.01, noise) + 0.2


def test_given_layout_is_rendered_as_given(shapes):
    layout = ParticleTable(
        tomo="",
        class_id=[1, 3],
        xyz=[[20.0, 30.0, 24.0], [55.0, 50.0, 20.0]],
        rotation=rotations_from_euler_zxz([0, 30], [0, 60], [0, 90]),
    )
    specimen = SpecimenParameters(shape_zyx=(48, 80, 80), voxel_size=VOXEL_SIZE, n_gold_beads=2)
    result = simulate_tomogram(shapes, specimen, TILTS, seed=0, layout=layout)
    assert np.allclose(result.particles.xyz, layout.xyz)
    assert result.labels[24, 30, 20] == 1 and result.labels[20, 50, 55] == 3
    assert result.density.max() > 10  # the gold beads, placed around the given particles


def test_a_detection_in_a_narrow_pore_is_on_the_particle():
    z, y, x = np.mgrid[-8:9, -8:9, -8:9]
    barrel = (x**2 + y**2 + z**2 <= 49) & (x**2 + y**2 > 1)  # a 3-voxel pore along z
    ring = (x**2 + y**2 <= 49) & (x**2 + y**2 > 16) & (abs(z) <= 2)  # a 7-voxel hole
    assert not barrel[8, 8, 8] and occupied_space(barrel)[8, 8, 8]
    assert not occupied_space(ring)[8, 8, 8]
    assert not np.any(occupied_space(barrel)[abs(z) > 7])  # nothing added outside the particle


def test_dataset_files(tmp_path):
    result = simulate_dataset(tmp_path, preset="tiny", n_tomograms=2, seed=5)
    assert result["voxel_size"] == VOXEL_SIZE
    classes = json.loads((tmp_path / "classes.json").read_text())
    assert [c["id"] for c in classes] == [1, 2, 3]
    assert [c["name"] for c in classes] == ["ribosome", "ring", "rod"]
    for entry in classes:
        mask = np.asarray(read_volume(tmp_path / entry["mask"]))
        assert mask.max() == 1 and 2 <= entry["radius_voxels"] <= 10
        assert read_voxel_size(tmp_path / entry["mask"]) == pytest.approx(VOXEL_SIZE)
    for index, paths in enumerate(result["tomograms"]):
        name = f"tomo_{index:03d}"
        assert paths["name"] == name
        tomogram = read_volume(tmp_path / f"{name}.mrc")
        assert tomogram.dtype == np.float32 and tomogram.shape == (64, 96, 96)
        assert read_voxel_size(tmp_path / f"{name}.mrc") == pytest.approx(VOXEL_SIZE)
        table = particle_csv.read(tmp_path / f"{name}_particles.csv").particles
        assert np.all(table.tomo == name) and set(table.class_id) == {1, 2, 3}
        labels = np.asarray(read_volume(tmp_path / f"{name}_labels.mrc"))
        occupancy = np.asarray(read_volume(tmp_path / f"{name}_occupancy.mrc"))
        assert set(np.unique(labels)) == {0, 1, 2, 3}
        assert occupancy.max() == len(table)
        for row in (0, len(table) - 1):
            inside = labels[occupancy == row + 1]
            assert table.class_id[row] in inside and set(np.unique(inside)) <= {0, table.class_id[row]}
        assert np.allclose(np.linalg.det(table.rotation), 1)
    first = particle_csv.read(tmp_path / "tomo_000_particles.csv").particles
    second = particle_csv.read(tmp_path / "tomo_001_particles.csv").particles
    assert not np.allclose(first.xyz[:5], second.xyz[:5])


def test_command_line(tmp_path, capsys):
    main(
        [
            "simulate",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path),
            "--tomograms",
            "1",
            "--seed",
            "2",
            "--snr",
            "0.5",
        ]
    )
    assert (tmp_path / "tomo_000.mrc").exists() and not (tmp_path / "tomo_001.mrc").exists()
    captured = capsys.readouterr()
    assert "SNR 0.5" in captured.out and "Wrote 1 tomograms" in captured.out


def test_custom_templates(tmp_path):
    path = tmp_path / "blob.mrc"
    density = np.zeros((31, 31, 31), np.float32)
    density[10:21, 12:19, 8:23] = 1  # a 5 A/voxel brick
    write_volume(path, density, voxel_size=5.0)
    result = simulate_dataset(tmp_path / "out", preset="tiny", n_tomograms=1, templates=[path])
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert [c["name"] for c in classes] == ["blob"]
    assert set(particle_csv.read(result["tomograms"][0]["particles"]).particles.class_id) == {1}


def test_bad_parameters_give_clear_errors(tmp_path, shapes):
    with pytest.raises(ValueError, match="Impossible packing"):
        simulate_tomogram(
            shapes,
            SpecimenParameters(shape_zyx=(48, 80, 80), voxel_size=VOXEL_SIZE, particles_per_class=200),
            TILTS,
        )
    with pytest.raises(ValueError, match="Impossible packing"):
        simulate_tomogram(
            shapes,
            SpecimenParameters(shape_zyx=(16, 80, 80), voxel_size=VOXEL_SIZE, particles_per_class=1),
            TILTS,
        )
    with pytest.raises(ValueError, match="not found"):
        simulate_dataset(tmp_path, templates=[tmp_path / "absent.mrc"])
    with pytest.raises(ValueError, match="snr: must be > 0"):
        TiltSeriesParameters(snr=0)
    with pytest.raises(ValueError, match="snr: must be > 0"):
        simulate_dataset(tmp_path, snr=-1.0)
    with pytest.raises(ValueError, match="Tilt range"):
        TiltSeriesParameters(tilt_min_deg=-95, tilt_max_deg=60)
    with pytest.raises(ValueError, match="Unknown preset"):
        simulate_dataset(tmp_path, preset="huge")


def test_the_second_bench_setting_differs_from_the_bench_in_imaging_only():
    bench, shifted = PRESETS["bench"], PRESETS["bench_shifted"]
    assert shifted.shrec19 and bench.shrec19 and shifted.shape_names == bench.shape_names
    assert (shifted.tilt_series.snr, bench.tilt_series.snr) == (0.05, 0.1)
    assert (shifted.tilt_series.defocus_um, bench.tilt_series.defocus_um) == (3.0, 4.0)
    angles, bench_angles = shifted.tilt_series.angles_deg, bench.tilt_series.angles_deg
    assert (angles.min(), angles.max(), bench_angles.min(), bench_angles.max()) == (-50, 50, -60, 60)
    assert len(angles) == len(bench_angles)  # the dose split over as many images
    assert (shifted.specimen.ice_thickness_a, bench.specimen.ice_thickness_a) == (3000.0, 2000.0)
    # Nothing else differs: the same layouts give the same specimen.
    assert replace(shifted.specimen, ice_beyond_volume_a=0.0) == bench.specimen
    assert (
        replace(
            shifted.tilt_series,
            snr=0.1,
            defocus_um=4.0,
            tilt_min_deg=-60.0,
            tilt_max_deg=60.0,
            tilt_step_deg=3.0,
        )
        == bench.tilt_series
    )


def test_ice_beyond_the_volume_makes_the_high_tilts_noisier(shapes):
    cropped = replace(SPECIMEN, shape_zyx=(40, 80, 80), slab_thickness_voxels=None)
    thin = simulate_tomogram(shapes, cropped, TILTS, seed=3)
    thick = simulate_tomogram(shapes, replace(cropped, ice_beyond_volume_a=2000.0), TILTS, seed=3)
    assert np.array_equal(thin.density, thick.density) and np.array_equal(thin.occupancy, thick.occupancy)
    assert not np.allclose(thin.tomogram, thick.tomogram, atol=1e-3)

    def noise_at_60_over_noise_at_0(ice_thickness_a):
        projections = np.random.default_rng(0).random((41, 32, 32), dtype=np.float32)
        tilts = TiltSeriesParameters(snr=0.01)
        images = image_tilt_series(projections, 10.0, tilts, ice_thickness_a, np.random.default_rng(1))
        return images[-1].var() / images[20].var()

    assert noise_at_60_over_noise_at_0(3000.0) > 1.2 * noise_at_60_over_noise_at_0(2000.0)
    with pytest.raises(ValueError, match="ice_beyond_volume_a needs the slab to fill the volume"):
        replace(SPECIMEN, ice_beyond_volume_a=500.0)  # a 40-voxel slab in 48 voxels
    with pytest.raises(ValueError, match="ice_beyond_volume_a must be >= 0"):
        replace(cropped, ice_beyond_volume_a=-1.0)


def test_shrec19_data_is_found_through_an_option_or_a_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(SHREC19_DIR_VARIABLE, raising=False)
    both_ways = f"with --shrec-dir or the {SHREC19_DIR_VARIABLE} environment variable"
    with pytest.raises(ValueError, match=f"no folder was given.*{both_ways}"):
        simulate_dataset(tmp_path / "out", preset="bench", n_tomograms=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--preset", "bench", "--out", str(tmp_path / "out"), "--shrec-dir", str(tmp_path)])
    refusal = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{tmp_path} has no shrec19/ folder" in refusal, refusal
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(SHREC19_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(ValueError, match=f"{tmp_path} has no shrec19/ folder.*{both_ways}"):
        shrec19_layout(0)
    (tmp_path / "shrec19").mkdir()
    assert shrec19_dir() == tmp_path
    monkeypatch.setenv(SHREC19_DIR_VARIABLE, str(tmp_path / "absent"))
    assert shrec19_dir(tmp_path) == tmp_path  # the option wins over the variable


SHREC_DIR = Path(
    os.environ.get(SHREC19_DIR_VARIABLE) or Path(__file__).resolve().parents[3] / "shared" / "data"
)


@pytest.mark.skipif(
    not (SHREC_DIR / "shrec19").is_dir(), reason=f"no SHREC'19 data: set {SHREC19_DIR_VARIABLE}"
)
def test_shrec19_templates_and_layouts():
    shapes = shrec19_shapes(10.0, SHREC_DIR)
    assert [shape.name for shape in shapes] == list(SHREC19_CLASSES)
    layout = shrec19_layout(0, SHREC_DIR)
    assert len(layout) > 1000 and set(layout.class_id) <= set(range(1, len(SHREC19_CLASSES) + 1))
