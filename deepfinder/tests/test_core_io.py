import mrcfile
import numpy as np
import pytest

from deepfinder.core import io


def test_volume_round_trip_keeps_voxel_size_and_axes(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    io.write_volume(tmp_path / "v.mrc", volume, voxel_size=13.7)
    read = io.read_volume(tmp_path / "v.mrc")
    np.testing.assert_array_equal(read, volume)
    assert isinstance(read, np.memmap)
    assert io.read_voxel_size(tmp_path / "v.mrc") == pytest.approx(13.7, abs=1e-3)


def test_zero_machine_stamp_is_read_with_a_warning(tmp_path):
    path = tmp_path / "stamp.mrc"
    io.write_volume(path, np.ones((3, 3, 3), np.float32))
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.machst = [0, 0, 0, 0]
    with pytest.warns(UserWarning, match="non-standard MRC header"):
        assert io.read_volume(path).shape == (3, 3, 3)


def test_missing_and_non_mrc_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        io.read_volume(tmp_path / "absent.mrc")
    (tmp_path / "text.mrc").write_text("not a volume")
    with pytest.raises(ValueError, match="not a readable MRC"):
        io.read_volume(tmp_path / "text.mrc")
