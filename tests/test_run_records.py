"""The run-folder records have one definition (issue #20): every key a real search or training
writes into ``history.json`` and its ``epoch`` events is claimed by a field of
:class:`backend.runfiles.EpochRecord` / :class:`~backend.runfiles.SearchEpoch`, and reading a
record back and writing it again gives the line that was written."""

from __future__ import annotations

import json

import pytest

from backend.progress import run
from backend.runfiles import EVENT_KEYS, EpochRecord, RunTrace, StepRecord, read_events
from backend.search.search import search
from backend.training.train import train

from test_search import _tiny
from test_training import _tiny_config


@pytest.mark.parametrize("kind", ["search", "train"])
def test_written_records_parse_strictly_and_round_trip(tiny_dataset, tmp_path, kind):
    out = tmp_path / kind
    job = search(_tiny(tiny_dataset, epochs=2), str(out)) if kind == "search" else \
        train(_tiny_config(tiny_dataset, epochs=2), str(out))
    yielded = []
    run(job, yielded.append)
    history = json.loads((out / "history.json").read_text())
    records = [EpochRecord.from_json(line, strict=True) for line in history]
    assert [r.epoch for r in records] == [0, 1]
    for line, record in zip(history, records):
        assert record.to_json() == line
        assert record.get("psnr") == line["psnr"] and record.validation["ssim"] == line["ssim"]
        assert (record.search is not None) == (kind == "search")
    events, _ = read_events(out)
    epochs = [e for e in events if e["kind"] == "epoch"]
    trace = RunTrace()
    for e in events:
        trace.feed(e)
    for event, line in zip(epochs, history):
        record = EpochRecord.from_json(event, strict=True)
        assert record.to_json() == line and record.done == event["done"]
        assert {k: v for k, v in event.items() if k not in EVENT_KEYS} == {k: v for k, v in line.items() if k != "epoch"}
        assert event["epoch"] == line["epoch"]
    assert trace.history == [EpochRecord.from_json(e) for e in epochs]
    # every step event (not only the ones written to events.jsonl)
    steps = [StepRecord.from_json(e.to_json(), strict=True) for e in yielded if e.kind == "step"]
    assert steps and all(s.lr is not None and s.done > 0 for s in steps)
    assert set(steps[-1].losses) == ({"loss_w", "loss_alpha"} if kind == "search" else {"loss"})
    if kind == "search":
        assert trace.genotype == history[-1]["genotype"] or trace.state == "done"
        assert records[-1].search.chosen_margin == history[-1]["chosen_margin"]
    else:
        assert records[-1].losses == {"train_loss": history[-1]["train_loss"]}


def test_an_unknown_key_is_refused_only_when_strict():
    line = {"epoch": 3, "train_loss": 0.5, "lr": 1e-3, "seconds": 2.0, "psnr": 30.0, "ssim": 0.9, "surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        EpochRecord.from_json(line, strict=True)
    record = EpochRecord.from_json(line)
    assert record.epoch == 3 and record.get("train_loss") == 0.5 and record.get("surprise") is None


def test_resume_accepts_fields_newer_than_the_run_at_their_default(tiny_dataset, tmp_path):
    """A run made before a config field existed (no key in its config.json) resumes while the
    field keeps its default, and is refused, naming the field, when it does not."""
    from dataclasses import replace

    from backend.errors import InputError

    out = tmp_path / "old"
    config = _tiny_config(tiny_dataset, epochs=1)
    run(train(config, str(out)))
    saved = json.loads((out / "config.json").read_text())
    for key in ("coils", "coil_snr_db"):  # as session 7's runs wrote it
        del saved[key]
    (out / "config.json").write_text(json.dumps(saved))
    run(train(config, str(out), resume=True))  # accepted: nothing left to do
    with pytest.raises(InputError, match="coils"):
        run(train(replace(config, coils=4), str(out), resume=True))
    with pytest.raises(InputError, match="epochs"):
        run(train(replace(config, epochs=3, coils=0), str(out), resume=True))
