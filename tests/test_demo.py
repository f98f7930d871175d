"""End to end on the shipped real sample: the main job."""

import json

import pytest

from backend.demo import demo_methods, run_demo
from backend.models import shipped_weights


def test_shipped_weights_load_and_are_in_the_demo():
    from backend.models import load_model
    from backend.models.genotype import default_genotype

    for name in ("nasn", "dccnn"):
        assert shipped_weights(name).exists(), f"no shipped weights for {name}"
        model, meta = load_model(shipped_weights(name))
        assert model.config.name == name and "validation" in meta
    nasn, _ = load_model(shipped_weights("nasn"))
    assert nasn.config.genotype == default_genotype()  # the shipped weights are the searched cell
    assert demo_methods() == ["zero-filled", "tv", "nasn", "dccnn"]


@pytest.mark.slow
def test_demo_learned_methods_beat_classical_ones(tmp_path, capsys):
    table = run_demo(str(tmp_path), quiet=True)
    for acc in ("4x", "8x"):
        rows = table[acc]
        assert rows["tv"]["psnr"] > rows["zero-filled"]["psnr"]
        assert rows["tv"]["ssim"] > rows["zero-filled"]["ssim"]
        for net in ("nasn", "dccnn"):
            assert rows[net]["psnr"] > rows["zero-filled"]["psnr"] + 1.0
            assert rows[net]["ssim"] > rows["zero-filled"]["ssim"]
        # every method saw the same mask
        assert len({round(r["realised_acceleration"], 6) for r in rows.values()}) == 1
    assert (tmp_path / "side_by_side.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["4x"]["nasn"]["psnr"] == pytest.approx(table["4x"]["nasn"]["psnr"])
    assert "PSNR" in capsys.readouterr().out
