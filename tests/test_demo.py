"""End to end on the shipped real sample: the main job."""

import json

import pytest

from backend.demo import run_demo


@pytest.mark.slow
def test_demo_tv_beats_zero_filled_at_4x_and_8x(tmp_path, capsys):
    table = run_demo(str(tmp_path), quiet=True)
    for acc in ("4x", "8x"):
        assert table[acc]["tv"]["psnr"] > table[acc]["zero-filled"]["psnr"]
        assert table[acc]["tv"]["ssim"] > table[acc]["zero-filled"]["ssim"]
    assert (tmp_path / "side_by_side.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["4x"]["tv"]["psnr"] == pytest.approx(table["4x"]["tv"]["psnr"])
    assert "PSNR" in capsys.readouterr().out
