"""The Middlebury .flo reader and writer (ssn.flow)."""
import struct

import numpy as np
import pytest

from ssn.flow import FlowFileError, flo_bytes, read_flo, write_flo


def test_round_trip_keeps_every_value(tmp_path):
    flow = np.random.default_rng(0).normal(0, 5, (7, 11, 2)).astype(np.float32)
    path = write_flo(tmp_path / "a.flo", flow)
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (7, 11, 2)
    np.testing.assert_array_equal(back, flow)


def test_layout_is_magic_width_height_then_u_v_by_row(tmp_path):
    flow = np.zeros((2, 3, 2), np.float32)
    flow[1, 2] = (5.5, -1.25)  # row 1, column 2: u, v
    data = flo_bytes(flow)
    assert data[:4] == b"PIEH" and struct.unpack("<f", data[:4])[0] == 202021.25
    assert struct.unpack("<ii", data[4:12]) == (3, 2)  # width, then height
    values = struct.unpack("<12f", data[12:])
    assert values[(1 * 3 + 2) * 2:(1 * 3 + 2) * 2 + 2] == (5.5, -1.25)
    assert len(data) == 12 + 2 * 3 * 2 * 4


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:8], "too short"),
    (lambda d: b"XXXX" + d[4:], "not a .flo file"),
    (lambda d: d[:-4], "truncated or trailing"),
    (lambda d: d + b"\0\0\0\0", "truncated or trailing"),
    (lambda d: d[:4] + struct.pack("<ii", 0, 2) + d[12:], "header says 0 x 2"),
])
def test_damaged_files_are_errors_that_say_why(tmp_path, damage, message):
    path = tmp_path / "bad.flo"
    path.write_bytes(damage(flo_bytes(np.ones((2, 3, 2), np.float32))))
    with pytest.raises(FlowFileError, match=message):
        read_flo(path)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3), (0, 5, 2)])
def test_only_h_w_2_arrays_are_written(tmp_path, shape):
    with pytest.raises(ValueError, match="H x W x 2"):
        write_flo(tmp_path / "x.flo", np.zeros(shape))
    assert not (tmp_path / "x.flo").exists()
