"""The table registry: formats chosen by name or extension, rescaling once, `deepfinder convert`."""

import numpy as np
import pytest

from deepfinder.core import io, tables
from deepfinder.core.cli import main
from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import csv as particle_csv
from deepfinder.tests.realformats import REAL_FORMATS, needs_real_formats
from deepfinder.tests.tables_helpers import assert_same, particles  # noqa: F401


def _convert(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["convert", *map(str, argv)])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out + captured.err


@pytest.mark.parametrize(
    "name, expected",
    [
        ("p.csv", "csv"),
        ("p.XML", "xml"),
        ("p.star", "relion5"),
        ("p.tbl", "dynamo"),
        ("p.mod", "imod"),
        ("copick_config.json", "copick"),
    ],
)
def test_the_extension_chooses_the_format(name, expected):
    assert tables.table_format(name).name == expected
    assert tables.table_format(name, "relion4").name == "relion4"


def test_a_star_file_is_read_as_stopgap_or_relion_by_its_content_and_a_folder_as_copick(tmp_path, particles):  # noqa: F811
    motive_list = tables.write_table(tmp_path / "m.star", particles, "stopgap")
    relion = tables.write_table(tmp_path / "r.star", particles, "relion4", voxel_size=5.0)
    assert tables.table_format(motive_list, reading=True).name == "stopgap"
    assert tables.table_format(relion, reading=True).name == "relion5"  # RELION 5 reads every flavour
    assert tables.table_format(motive_list).name == "relion5"  # writing: the extension alone
    assert_same(tables.read_table(motive_list, coordinates_voxel_size=1.0).particles, particles)
    assert tables.table_format(tmp_path).name == "copick"


def test_unknown_extensions_names_and_options_are_refused_with_the_choices(tmp_path, particles):  # noqa: F811
    with pytest.raises(
        InputError,
        match=r"p.txt: unknown particle table extension '.txt': use .csv, .json, .mod, .star, .tbl, .xml",
    ):
        tables.table_format("p.txt")
    with pytest.raises(
        InputError, match="unknown table format 'emdb': use one of csv, xml, relion5, relion4, dynamo"
    ):
        tables.table_format("p.tbl", "emdb")
    path = particle_csv.write(tmp_path / "p.csv", particles)
    with pytest.raises(
        InputError,
        match=r"option\(s\) table_map are not for reading .*p.csv \(csv\): table_map is for dynamo, stopgap",
    ):
        tables.read_table(path, table_map="p.doc")
    with pytest.raises(InputError, match="subvolume_offset is for imod"):
        tables.convert_table(path, tmp_path / "p.tbl", subvolume_offset=True)
    assert not (tmp_path / "p.tbl").exists()


def test_positions_are_rescaled_once_to_the_voxel_size_asked(tmp_path):
    table = ParticleTable(tomo="t", class_id=1, xyz=[[10, 20, 30]])
    path = tables.write_table(tmp_path / "p.star", table, "relion4", voxel_size=5.0)
    read = tables.read_table(path, voxel_size=10.0)
    assert read.voxel_size == 10.0
    np.testing.assert_allclose(read.particles.xyz, [[5, 10, 15]])
    with pytest.raises(InputError, match="states its positions' units"):
        tables.read_table(path, coordinates_voxel_size=5.0)


def test_project_tables_are_in_the_tomograms_voxels(tmp_path):
    path = particle_csv.write(tmp_path / "p.csv", ParticleTable(tomo="t", class_id=1, xyz=[[1, 2, 3]]))
    assert tables.read_table(path).voxel_size is None
    read = tables.read_table(path, coordinates_voxel_size=20.0, voxel_size=10.0)
    np.testing.assert_allclose(read.particles.xyz, [[2, 4, 6]])


def test_convert_round_trip_through_relion5_with_sizes(tmp_path, capsys, particles):  # noqa: F811
    source = particle_csv.write(tmp_path / "in.csv", particles)
    code, output = _convert(
        capsys, source, tmp_path / "out.star", "--tomograms", "80,80,40", "--voxel-size", 7.5
    )
    assert code == 0 and f"Wrote 4 particles to {tmp_path / 'out.star'}" in output
    code, _ = _convert(
        capsys, tmp_path / "out.star", tmp_path / "back.csv", "--tomograms", "80,80,40", "--voxel-size", 7.5
    )
    assert code == 0
    assert_same(particle_csv.read(tmp_path / "back.csv").particles, particles)


def test_convert_refuses_relion5_without_sizes_and_overwriting_its_input(tmp_path, capsys, particles):  # noqa: F811
    source = particle_csv.write(tmp_path / "in.csv", particles)
    code, output = _convert(capsys, source, tmp_path / "out.star", "--voxel-size", 7.5)
    assert code == 2 and "relion5 positions are centred: give the tomograms' sizes" in output
    code, output = _convert(capsys, source, source, "--to", "xml")
    assert code == 2 and "would overwrite the input" in output
    assert not (tmp_path / "out.star").exists()


@needs_real_formats
def test_convert_a_relion5_file_with_its_tomograms_star(tmp_path, capsys):
    code, output = _convert(
        capsys,
        REAL_FORMATS / "relion5_tutorial_run_data_first200.star",
        tmp_path / "p.csv",
        "--tomograms",
        REAL_FORMATS / "relion5_tutorial_run_tomograms.star",
    )
    assert code == 0 and "Wrote 200 particles" in output
    table = particle_csv.read(tmp_path / "p.csv").particles
    assert set(table.tomo) == {"TS_01"}
    assert (table.xyz >= 0).all() and (
        table.xyz < 4000
    ).all()  # unbinned pixels of a 4000 x 4000 x 2000 tomogram


BINNED_PIXEL = 7.407407 * 1.35  # the RELION 5 tutorial's tomograms, binned 7.407407 from 1.35 A
# Each table the real tools wrote: its rows, and the options `deepfinder convert` needs for it to
# write RELION 5 (tomogram sizes; a pixel size where the file states none). Any file name is
# taken from the folder of real files.
REAL_TABLES = {
    "relion5_tutorial_run_data_first200.star": (200, ["--tomograms", "relion5_tutorial_run_tomograms.star"]),
    "relion5_picktomo_job019_particles.star": (
        9442,
        ["--tomograms", "relion5_tutorial_denoise_tomograms.star"],
    ),
    "relion5_picktomo_job019_TS_01_annotation.star": (
        1960,
        ["--tomograms", "relion5_tutorial_denoise_tomograms.star", "--coordinates-voxel-size", BINNED_PIXEL],
    ),
    "relion4_pseudosubtomo_data.star": (1746, ["--tomograms", "4000,4000,2000", "--voxel-size", 1.971]),
    "warp1_relion30_subtomo.star": (3, ["--tomograms", "1000,1000,500", "--voxel-size", 5.364]),
    "warptools2_particles_matching.star": (1218, ["--tomograms", "warptools2_matching_tomograms.star"]),
    "dynamo_t_complex.tbl": (
        8742,
        [
            "--table-map",
            "dynamo_tmap_complex.doc",
            "--coordinates-voxel-size",
            15,
            "--tomograms",
            "400,400,200",
            "--voxel-size",
            15,
        ],
    ),
    "dynamo_b4_motl_CR_tm.tbl": (
        1343,
        ["--coordinates-voxel-size", 8, "--tomograms", "1000,1000,500", "--voxel-size", 8],
    ),
    "stopgap_class6_er_mr1_1_sg_first200.star": (
        200,
        ["--coordinates-voxel-size", 8, "--tomograms", "1000,1000,500", "--voxel-size", 8],
    ),
    "imod_slicer_angle_example.mod": (4, ["--tomograms", "1000,1000,500", "--voxel-size", 16.145]),
    "imod_point_sizes_example.mod": (18, ["--tomograms", "1000,1000,500", "--voxel-size", 12.399]),
    "imod_cryocat_correct189.mod": (
        74,
        [
            "--subvolume-offset",
            "--coordinates-voxel-size",
            10,
            "--tomograms",
            "2000,2000,1000",
            "--voxel-size",
            10,
        ],
    ),
}
# The other files: tomogram sizes and a table map, given with the tables above.
COMPANIONS = {
    "relion5_tutorial_run_tomograms.star",
    "relion5_tutorial_denoise_tomograms.star",
    "warptools2_matching_tomograms.star",
    "dynamo_tmap_complex.doc",
}


@needs_real_formats
def test_every_real_file_is_a_table_converted_below_or_a_companion_of_one():
    files = {path.name for path in REAL_FORMATS.iterdir() if path.name != "README.md"}
    assert files == set(REAL_TABLES) | COMPANIONS


@needs_real_formats
@pytest.mark.parametrize("name", list(REAL_TABLES))
def test_every_real_table_converts_to_csv_and_relion5_with_all_its_rows(tmp_path, capsys, name):
    rows, options = REAL_TABLES[name]
    options = [
        REAL_FORMATS / o if isinstance(o, str) and (REAL_FORMATS / o).is_file() else o for o in options
    ]
    for output in ("p.csv", "p.star"):
        code, printed = _convert(capsys, REAL_FORMATS / name, tmp_path / output, *options)
        assert code == 0, printed
        assert f"Wrote {rows} particles to {tmp_path / output}" in printed
    csv_read = particle_csv.read(tmp_path / "p.csv").particles
    voxel_size = options[options.index("--voxel-size") + 1] if "--voxel-size" in options else None
    given = options[options.index("--tomograms") + 1]
    tomograms = tables.tomograms_from(str(given), voxel_size or 1.0)
    star_read = tables.read_table(tmp_path / "p.star", tomograms=tomograms).particles
    assert len(csv_read) == len(star_read) == rows
    assert list(csv_read.tomo) == list(star_read.tomo)
    assert list(csv_read.class_id) == list(star_read.class_id)
    assert not any(tomo.endswith(".tomostar") for tomo in csv_read.tomo)


@needs_real_formats
def test_dynamo_class_0_rows_are_kept_with_a_warning(tmp_path, capsys):
    code, printed = _convert(
        capsys,
        REAL_FORMATS / "dynamo_t_complex.tbl",
        tmp_path / "p.csv",
        "--table-map",
        REAL_FORMATS / "dynamo_tmap_complex.doc",
        "--coordinates-voxel-size",
        15,
    )
    assert code == 0 and "8742 of 8742 particles are of class 0, DeepFinder's background" in printed
    table = particle_csv.read(tmp_path / "p.csv").particles
    assert set(table.class_id) == {0}
    assert table.tomo[0] == "tomo_ts01.mrc_15.00Apx.mrc"
    one_tomogram = particle_csv.write(tmp_path / "one.csv", table.of_tomogram(table.tomo[0]))
    code, printed = _convert(capsys, one_tomogram, tmp_path / "p.mod", "--voxel-size", 15)
    assert code == 2 and "class 0 (background) cannot be written" in printed


@needs_real_formats
def test_a_table_without_its_pixel_size_is_refused_with_the_option_to_give(tmp_path, capsys):
    code, printed = _convert(capsys, REAL_FORMATS / "dynamo_b4_motl_CR_tm.tbl", tmp_path / "p.csv")
    assert code == 2 and "give the coordinates' voxel size" in printed
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("output, label", [("p.star", "rlnCenteredCoordinateXAngst"), ("p.tbl", None)])
def test_cluster_writes_relion5_and_dynamo_by_the_extension(tmp_path, capsys, output, label):
    labels = np.zeros((20, 24, 28), np.int8)
    labels[13:16, 11:14, 9:12] = 1  # a particle at (x, y, z) = (10, 12, 14)
    io.write_volume(tmp_path / "tomo.mrc", labels, voxel_size=12.0)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "cluster",
                "--labels",
                str(tmp_path / "tomo.mrc"),
                "--radius",
                "2",
                "--output",
                str(tmp_path / output),
            ]
        )
        raise SystemExit(0)
    assert exit_.value.code == 0, capsys.readouterr().err
    assert label is None or label in (tmp_path / output).read_text()
    geometry = tables.SameForAll(tables.TomogramGeometry((28, 24, 20), 12.0))
    read = tables.read_table(tmp_path / output, tomograms=geometry, voxel_size=12.0)
    assert list(read.particles.tomo) == ["tomo"]
    np.testing.assert_allclose(read.particles.xyz, [[10, 12, 14]], atol=0.01)


def test_evaluate_compares_a_relion5_table_with_a_csv(tmp_path, capsys, particles):  # noqa: F811
    reference = particle_csv.write(tmp_path / "reference.csv", particles)
    detected = tables.write_table(
        tmp_path / "detected.star", particles, voxel_size=10.0, tomograms=_same_size(80, 80, 40)
    )
    argv = ["evaluate", "--detected", detected, "--reference", reference, "--tolerance", "0.5"]
    with pytest.raises(SystemExit) as exit_:
        main([*map(str, argv), "--tomograms", "80,80,40", "--voxel-size", "10"])
        raise SystemExit(0)
    output = capsys.readouterr()
    assert exit_.value.code == 0, output.err
    overall = [line for line in output.out.splitlines() if line.startswith("all")]
    assert overall and overall[0].split()[-1] == "1.000"  # F1 of every class together


def _same_size(x: int, y: int, z: int) -> tables.SameForAll:
    return tables.SameForAll(tables.TomogramGeometry((x, y, z), 10.0))
