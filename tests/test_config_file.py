"""``nascsmri search|train --config FILE.json``: every config field settable, flags override the
file, a run's ``config.json`` reruns it, bad files are one-line errors that leave nothing."""

import json
from dataclasses import asdict

import pytest

from backend import config as cfg
from backend.cli import build_parser, main
from backend.commands import job_config_from_args
from backend.errors import InputError
from backend.job_config import job_config, read_config_file


def settings(argv: list[str], kind: str):
    return job_config_from_args(build_parser().parse_args(argv), kind)


def test_flags_alone_give_the_preset_and_the_defaults(tmp_path):
    config = settings(["train", "--model", "dccnn", "--data", "D", "--out", str(tmp_path / "r")], "train")
    expected = cfg.apply_preset(cfg.TrainConfig(model="dccnn", data="D"), cfg.TRAIN_PRESETS)
    assert config == expected and (config.seed, config.device, config.preset) == (0, "auto", "cpu")
    search = settings(["search", "--data", "D", "--out", str(tmp_path / "s")], "search")
    assert search == cfg.apply_preset(cfg.SearchConfig(data="D"), cfg.SEARCH_PRESETS)
    assert (search.space, search.nodes, search.epochs) == ("A", 3, cfg.SEARCH_PRESETS["cpu"]["epochs"])


def test_file_sets_fields_without_flags_and_flags_override_it(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"kind": "train", "model": "modl", "data": "D", "preset": "ship", "lr": 3e-4,
                                "batch_size": 3, "epochs": 7, "aug_noise_snr_db": [20, 30], "seed": 5}))
    config = settings(["train", "--config", str(path), "--epochs", "2", "--out", str(tmp_path / "r")], "train")
    assert (config.model, config.lr, config.batch_size, config.seed) == ("modl", 3e-4, 3, 5)
    assert config.epochs == 2  # the flag wins over the file
    assert config.aug_noise_snr_db == (20, 30)  # JSON lists become the dataclass' tuples
    # the file wins over its preset: ship's steps stay, its epochs do not
    assert config.steps_per_epoch == cfg.TRAIN_PRESETS["ship"]["steps_per_epoch"]
    search = tmp_path / "search.json"
    search.write_text(json.dumps({"data": "D", "w_lr": 0.01, "alpha_lr": 1e-3, "max_skip": None}))
    s = settings(["search", "--config", str(search), "--nodes", "2", "--out", str(tmp_path / "s")], "search")
    assert (s.w_lr, s.alpha_lr, s.max_skip, s.nodes) == (0.01, 1e-3, None, 2)


def test_a_runs_config_json_reruns_it(tiny_dataset, tmp_path):
    """Flags -> run -> config.json; --config config.json -> the same config.json again."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--model", "dccnn", "--blocks", "1", "--data", str(tiny_dataset), "--epochs", "1",
                 "--steps-per-epoch", "1", "--crop", "32", "--device", "cpu", "--seed", "4",
                 "--out", str(first), "--quiet"]) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["kind"] == "train" and saved["seed"] == 4 and saved["blocks"] == 1
    assert main(["train", "--config", str(first / "config.json"), "--out", str(second), "--quiet"]) == 0
    assert json.loads((second / "config.json").read_text()) == saved
    # the same config rebuilt in memory equals the dataclass the first run used
    rebuilt = job_config("train", read_config_file(first / "config.json", "train"))
    assert {"kind": "train", **json.loads(json.dumps(asdict(rebuilt), default=list))} == saved


@pytest.mark.parametrize("content, problem", [
    ('{"data": "D", "epochz": 3}', "unknown train setting 'epochz'"),
    ('{"kind": "search", "data": "D"}', "is a 'search' config, not a train config"),
    ('[1, 2]', "one JSON object of settings, not a list"),
    ('{"data": "D", "model": "dccnn"', "not a JSON config"),
    ('{"data": "D", "model": "dccnn", "epochs": -1}', "epochs"),
    ('{"data": "D", "model": "dccnn", "preset": "huge"}', "unknown train preset 'huge'"),
    ('{"model": "dccnn"}', "--data is required"),
])
def test_bad_config_files_are_one_line_errors_and_leave_nothing(tmp_path, capsys, content, problem):
    path = tmp_path / "job.json"
    path.write_text(content)
    before = path.read_bytes()
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nascsmri: error: ") and problem in err[0], err
    assert str(path) in err[0] or problem.startswith("--data")
    assert not out.exists() and path.read_bytes() == before


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(InputError, match="missing.json"):
        read_config_file(tmp_path / "missing.json", "search")
