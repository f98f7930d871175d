"""Bench scripts must not rot: the prepared GPU check (run on the CPU, between the tasks that
are lent a GPU), the speed benchmarks, the realistic benchmark and the search-vs-random
protocol, at tiny sizes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.machine import slug

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_the_cpu_and_reports(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path), "--size", "24",
                           "--batches", "1", "2", "--seconds", "0.05", "--device", "cpu"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"] == "cpu" and report["size"] == 24
    assert {r["model"] for r in report["inference"]} == {"NasN", "DCCNN-3"}
    assert {(r["variant"], r["batch"]) for r in report["inference"]} == {
        (v, b) for v in ("reference", "fast") for b in (1, 2)}
    assert all(r["slices_per_s"] > 0 for r in report["inference"])
    for label in ("NasN", "DCCNN-3"):  # on the CPU, fast is the exact plan
        assert report["agreement"][label]["max_abs_diff"] < 1e-5
        assert report["train_step_s"][label] > 0
    assert report["search_step_s"] > 0


def test_stripe_rows_benchmark_reports_exact_plans(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "stripe_rows.py"), "--sizes", "40", "--rows", "none", "8", "auto",
               "--repeats", "1", "--out", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / f"stripe_rows_{slug()}.json").read_text())
    nasn = [r for r in report["rows"] if r["model"] == "NasN"]
    assert [r["stripe_rows"] for r in nasn] == [None, 8, "auto"]
    assert all(r["max_abs_diff"] < 1e-5 and r["latency_s"] > 0 for r in nasn)
    assert [r["model"] for r in report["rows"]].count("DCCNN-3") == 1


def test_kernel_calls_benchmark_counts_every_call(tmp_path):
    """Every fused-kernel call of a shipped NasN forward is counted: per reconstruction module
    the stem's readers, then per cell its three nodes and its readers: 3 x (1 + 3 x 4) = 39."""
    from backend.models.kernels import fused_pointwise

    if fused_pointwise() is None:
        pytest.skip("the fused kernel is not available on this machine")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "kernel_calls.py"), "--size", "24", "--rounds", "2",
                           "--threads", "1", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / f"kernel_calls_{slug()}.json").read_text())
    assert sum(r["calls_per_forward"] for r in report["rows"]) == 39
    assert 0 < report["kernel_ms"] <= report["forward_ms"] and report["threads"] == 1
    assert all(r["gmacs_per_s"] > 0 for r in report["rows"])
    # the head's taps: the one call writing 18 channel planes, once per module
    assert [r["calls_per_forward"] for r in report["rows"] if r["call"].endswith("out 18p")] == [3]


def test_head_to_head_benchmark_reports_ratios(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "head_to_head.py"), "--size", "32", "--rounds", "2",
                           "--warmup", "0", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / f"head_to_head_32_{slug()}.json").read_text())
    assert len(report["rows"]) == 3 and report["rows"][2]["plan"] == "DCCNN-3 fast"
    assert report["rows"][2]["ratio_to_dccnn3_median"] == 1.0
    assert all(len(r["times_s"]) == 2 and r["median_s"] > 0 for r in report["rows"])
    assert report["max_abs_diff_kernel_vs_onednn"] < 1e-5
    figure = tmp_path / f"head_to_head_32_{slug()}.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    replot = subprocess.run([sys.executable, str(ROOT / "bench" / "head_to_head.py"), "--replot",
                             str(tmp_path / f"head_to_head_32_{slug()}.json")], capture_output=True, text=True, cwd=ROOT)
    assert replot.returncode == 0, replot.stderr
    assert figure.stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_head_to_head_with_the_avx2_paths_names_its_file(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "head_to_head.py"), "--size", "32", "--rounds", "1",
                           "--warmup", "0", "--avx2-paths", "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / f"head_to_head_32_{slug()}_avx2paths.json").read_text())
    assert report["avx2_paths"] is True and report["max_abs_diff_kernel_vs_onednn"] < 1e-5


def test_bf16_benchmark_compares_precisions_on_the_same_slices(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bf16_cpu.py"), "--size", "32", "--rounds", "2",
                           "--warmup", "0", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["plan"], r["precision"]): r for r in json.loads((tmp_path / f"bf16_cpu_{slug()}.json").read_text())["rows"]}
    fp32, bf16 = rows[("DCCNN-3 fast", "float32")], rows[("DCCNN-3 fast", "bf16")]
    assert fp32["ratio_to_dccnn3_float32"] == 1.0 and len(bf16["times_s"]) == 2
    # bf16 changes DCCNN-3's output a little, not its quality; float32 rows have no difference
    assert 0 < bf16["max_diff_to_float32_percent_of_reference_max"] < 5
    assert abs(bf16["sample_psnr"] - fp32["sample_psnr"]) < 0.5 and fp32["max_diff_to_float32_percent_of_reference_max"] is None
    # the two float32 NasN plans reconstruct the sample alike
    assert rows[("NasN fast, oneDNN only", "float32")]["sample_psnr"] == pytest.approx(
        next(r for k, r in rows.items() if k[0].startswith("NasN fast (") and k[1] == "float32")["sample_psnr"], abs=1e-3)


def test_inference_speed_benchmark_measures_both_nasn_plans(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "inference_speed.py"), "--size", "32", "--repeats", "1",
                           "--warmup", "0", "--methods", "NasN", "DCCNN-3", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / f"inference_{slug()}.json").read_text())
    variants = {(r["method"], r["variant"]) for r in report["rows"]}
    assert {("NasN", "fast"), ("NasN", "fast-onednn"), ("DCCNN-3", "fast")} <= variants
    assert ("DCCNN-3", "fast-onednn") not in variants
    onednn = next(r for r in report["rows"] if r["variant"] == "fast-onednn")
    assert onednn["fused_kernel"] is False and onednn["max_abs_diff"] < 1e-5
    assert onednn["latency_ratio_to_dccnn3"] > 0


def _one_small_round(script: str, out, *extra: str) -> dict:
    """``bench/<script> --rounds 1 --warmup 0 --crop 24 --out OUT [extra]`` run to its end; its report."""
    proc = subprocess.run([sys.executable, f"bench/{script}", "--rounds", "1", "--warmup", "0", "--crop", "24",
                           "--out", str(out), *extra], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_train_step_benchmark_names_its_machine(tmp_path):
    report = _one_small_round("train_step.py", tmp_path / "ts.json", "--steps-per-round", "3")
    assert report["machine"]["slug"] == slug() and report["machine"]["cpu"] and report["steps_per_round"] == 3
    assert [r["model"] for r in report["rows"]][:3] == ["NasN (training plan)", "NasN (reference module)", "DCCNN-3"]
    assert report["gradient_rel_diff_plan_vs_reference"] < 1e-4
    assert 0 < report["gradient_rel_diff_plan_vs_reference_mse"] < 1e-4


def test_split_train_step_benchmark_sums_the_same_gradients(tmp_path):
    """The per-sample split step's gradients are the batch step's (to float32 rounding)."""
    report = _one_small_round("train_step_split.py", tmp_path / "split.json")
    assert report["machine"]["slug"] == slug()
    assert [(r["model"], r["mode"]) for r in report["rows"]] == [
        ("nasn", "plain"), ("nasn", "split"), ("dccnn", "plain"), ("dccnn", "split")]
    assert all(0 < d < 1e-4 for d in report["gradient_rel_diff_split_vs_plain"].values())


def test_realistic_benchmark_smoke(tiny_dataset, tmp_path):
    """Every category is built and read back, every method scores the same slices, the paired
    table and the figure are written."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    shutil.copytree(data / "val", data / "test")
    results = tmp_path / "res"
    proc = subprocess.run([sys.executable, "bench/realistic.py", "--data", str(data), "--out", str(tmp_path / "run"),
                           "--results", str(results), "--max-slices", "1", "--val-files", "1", "--tv-weights", "0.01",
                           "0.03", "--methods", "zero-filled", "tv-tuned", "nasn"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((results / "results.json").read_text())
    assert len(report["table"]) == 6 * 2  # six categories at 4x and 8x
    row = report["table"]["raw_phase|4"]
    assert set(row) == {"zero-filled", "tv-tuned", "nasn"} and "nasn_minus" in row["zero-filled"]
    assert row["zero-filled"]["nasn_minus"]["psnr"]["n"] == 1
    assert set(report["tv_tuned_weights"].values()) <= {0.01, 0.03}
    assert (results / "results.png").stat().st_size > 10000
    assert "Paired NasN" in (results / "results.md").read_text()
    # a second run that takes the non-network methods' scores from the first (empty cache)
    again = tmp_path / "res2"
    reuse = ["--reuse", str(results / "results.json"), "--reuse-methods", "zero-filled", "tv-tuned"]
    base = [sys.executable, "bench/realistic.py", "--data", str(data), "--out", str(tmp_path / "run2"),
            "--max-slices", "1", "--categories", "magnitude", "noisy", "--methods", "zero-filled", "tv-tuned", "nasn"]
    proc = subprocess.run(base + ["--results", str(again)] + reuse, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = json.loads((again / "results.json").read_text())
    assert second["reused"] == {"zero-filled": str(results / "results.json"), "tv-tuned": str(results / "results.json")}
    assert second["scores"]["tv-tuned"]["noisy"] == report["scores"]["tv-tuned"]["noisy"]
    assert second["scores"]["nasn"]["noisy"] == report["scores"]["nasn"]["noisy"]  # recomputed: the same
    assert set(second["tv_tuned_weights"]) == {"magnitude|4", "magnitude|8", "noisy|4", "noisy|8"}
    earlier = json.loads((results / "results.json").read_text())
    earlier["test_files"] = ["someone_else.h5"]
    (tmp_path / "other.json").write_text(json.dumps(earlier))
    proc = subprocess.run(base + ["--results", str(tmp_path / "res3"), "--reuse", str(tmp_path / "other.json"),
                                  "--reuse-methods", "tv-tuned"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode != 0 and "test files differ" in proc.stderr
    assert not (tmp_path / "res3").exists()


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART is not installed")
@pytest.mark.parametrize("mask", ["random", "poisson"])
def test_multicoil_benchmark_smoke(tiny_dataset, tmp_path, mask):
    """The multi-coil cases are built, every method runs from the coils and by the RSS path on
    the same slices (column masks or a 2-D pattern), and the paired table against TV from the
    coils is written."""
    import shutil as sh

    data = tmp_path / "data"
    sh.copytree(tiny_dataset, data)
    sh.copytree(data / "val", data / "test")
    results = tmp_path / "res"
    proc = subprocess.run([sys.executable, "bench/multicoil.py", "--data", str(data), "--out", str(tmp_path / "run"),
                           "--results", str(results), "--max-slices", "1", "--methods", "zero-filled", "tv",
                           "--mask", mask],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((results / "results.json").read_text())
    assert report["mask"] == mask
    row = report["table"]["4"]
    assert set(row) == {"zero-filled (coils)", "TV (coils)", "zero-filled (RSS path)", "TV (RSS path)"}
    assert "minus_tv_coils" not in row["TV (coils)"]
    assert row["TV (RSS path)"]["minus_tv_coils"]["psnr"]["n"] == 1
    # the two zero-filled images differ (coils undersampled vs the RSS image undersampled)
    assert row["zero-filled (coils)"]["psnr"]["mean"] != row["zero-filled (RSS path)"]["psnr"]["mean"]
    assert "Paired X − TV (coils)" in (results / "results.md").read_text()
    # per-slice scores kept, in the realistic benchmark's layout: compare_results pairs two methods
    tv = report["scores"]["tv"]["multicoil"]["4"]["psnr"]
    assert sum(tv) / len(tv) == pytest.approx(row["TV (coils)"]["psnr"]["mean"])
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "bench/compare_results.py", f"{results / 'results.json'}:tv",
                           f"{results / 'results.json'}:tv (RSS path)", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    paired = json.loads((out / "compare.json").read_text())["table"]["multicoil|4"]["b_minus_a"]["psnr"]
    assert paired["mean"] == pytest.approx(row["TV (RSS path)"]["minus_tv_coils"]["psnr"]["mean"])


def test_raw_two_coils_benchmark_smoke(tiny_dataset, tmp_path):
    """Three raw-like two-coil cases are written in fastMRI multi-coil layout (canvas of twice the
    rows, RSS reference of the central rows, the narrow case 5/7 of the columns), every method
    runs by the three coil settings on the same slices, and the path ``auto`` took is recorded."""
    import shutil as sh

    import h5py

    data = tmp_path / "data"
    sh.copytree(tiny_dataset, data)
    sh.copytree(data / "val", data / "test")
    results = tmp_path / "res"
    proc = subprocess.run([sys.executable, "bench/raw_two_coils.py", "--data", str(data), "--out", str(tmp_path / "run"),
                           "--results", str(results), "--methods", "zero-filled", "--accelerations", "4"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with h5py.File(tmp_path / "run" / "narrow_v3.h5") as f:
        k, ref = f["kspace"].shape, f["reconstruction_rss"].shape
    assert k == (ref[0], 2, 2 * ref[1], ref[2]) and ref[2] == round(48 * 5 / 7) and 1 <= ref[0] <= 3
    report = json.loads((results / "results.json").read_text())
    assert set(report["scores"]) == {"full_v0", "full_v3", "narrow_v3"}
    row = report["scores"]["narrow_v3"]["4"]["zero-filled"]
    assert len(row["multi"]["psnr"]) == len(row["rss"]["psnr"]) == ref[0]
    # auto is one of the two paths, slice for slice
    assert row["auto"] == row["multi" if row["auto_path"] == "coils" else "rss"]
    assert "| narrow_v3 | 4x | zero-filled |" in (results / "results.md").read_text()


def test_masks_2d_benchmark_smoke(tiny_dataset, tmp_path):
    """Each mask runs every method on the same slices; the 2-D masks reach their acceleration,
    the paired NasN - TV rows and the figure are written."""
    import shutil as sh

    data = tmp_path / "data"
    sh.copytree(tiny_dataset, data)
    sh.copytree(data / "val", data / "test")
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "bench/masks_2d.py", "--data", str(data), "--out", str(out),
                           "--accelerations", "4", "--masks", "random", "gaussian2d", "--methods", "tv", "nasn",
                           "--max-files", "1"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["mask"], r["method"]) for r in rows] == [("random", "tv"), ("random", "nasn"),
                                                        ("gaussian2d", "tv"), ("gaussian2d", "nasn")]
    assert len({r["slices"] for r in rows}) == 1
    two_d = [r for r in rows if r["mask"] == "gaussian2d"]
    assert all(abs(r["realised_acceleration"] - 4) < 0.05 for r in two_d)
    assert two_d[1]["nasn_minus_tv"]["psnr"]["n"] == rows[0]["slices"]
    assert (out / "masks_2d.png").stat().st_size > 10_000


@pytest.mark.slow
def test_search_vs_random_smoke(tiny_dataset, tmp_path):
    """Tiny budgets: one search, two random cells, DCCNN-3, all retrained and scored on the
    same slices; the table ranks them and the figure is written."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    shutil.copytree(data / "val", data / "test")
    small = {"channels": 4, "cells": 1, "cascades": 1, "epochs": 1, "steps_per_epoch": 2, "crop": 32}
    search_set = {**small, "warmup_epochs": 0, "patience": None, "min_epochs": 0}
    train_set = {"channels": 4, "cells": 1, "cascades": 1, "epochs": 1, "steps_per_epoch": 2, "crop": 32,
                 "val_volumes": 1}
    results = tmp_path / "res"
    cmd = [sys.executable, "bench/search_vs_random.py", "--data", str(data), "--out", str(tmp_path / "run"),
           "--results", str(results), "--methods", "darts", "--seeds", "0", "--random", "2", "--nodes", "2",
           "--flops-tolerance", "1.0", "--categories", "magnitude", "--max-slices", "1",
           "--search-set", json.dumps(search_set), "--train-set", json.dumps(train_set)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((results / "results.json").read_text())
    cells = report["cells"]
    assert set(cells) == {"darts_seed0", "darts+perturb_seed0", "random0", "random1", "dccnn3"}
    perturbed = json.loads((tmp_path / "run" / "search_darts_seed0" / "reselect_perturb.json").read_text())
    assert cells["darts+perturb_seed0"]["genotype"] == perturbed["genotype"]
    # a genotype met twice is retrained once: the later name shares the earlier one's scores
    if perturbed["genotype"] == cells["darts_seed0"]["genotype"]:
        assert cells["darts+perturb_seed0"]["trained_as"] == "darts_seed0"
        assert not (tmp_path / "run" / "train_darts+perturb_seed0").exists()
    else:
        assert cells["darts+perturb_seed0"]["trained_as"] == "darts+perturb_seed0"
    ranked = {n: c for n, c in cells.items() if n != "dccnn3"}
    for n, c in ranked.items():  # rank = 1 + how many cells have a higher mean PSNR (ties share)
        assert c["rank_psnr"] == 1 + sum(o["mean_psnr"] > c["mean_psnr"] for o in ranked.values())
    assert (results / "results.png").stat().st_size > 5000
    # a second call finds every stage done and recomputes nothing
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and json.loads((results / "results.json").read_text())["cells"] == report["cells"]
    # --interim reports what scores.json holds, each distinct genotype once, with the same means
    interim = tmp_path / "interim"
    proc = subprocess.run([sys.executable, "bench/search_vs_random.py", "--data", str(data), "--out", str(tmp_path / "run"),
                           "--results", str(interim), "--nodes", "2", "--interim"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    partial = json.loads((interim / "results.json").read_text())["cells"]
    assert set(partial) == {c["trained_as"] for n, c in cells.items() if n != "dccnn3"} | {"dccnn3"}
    assert all(partial[n]["mean_psnr"] == cells[n]["mean_psnr"] for n in partial)
    # bench/retrain_seeds.py: two of the cells retrained with another seed on the same slices
    seeds = tmp_path / "seeds"
    cmd = [sys.executable, "bench/retrain_seeds.py", "--data", str(data), "--out", str(tmp_path / "run"),
           "--results", str(seeds), "--cells", "random0", "random1", "--seeds", "1", "--categories", "magnitude",
           "--max-slices", "1", "--train-set", json.dumps(train_set)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((seeds / "results.json").read_text())
    assert out["seeds"] == [0, 1] and out["slices"] == 2
    for name in ("random0", "random1"):  # seed 0 is the protocol's own run
        assert out["cells"][name]["seeds"]["0"]["psnr"] == cells[name]["mean_psnr"]
        assert (tmp_path / "run" / f"train_{name}_seed1" / "best.safetensors").exists()
    diff = out["cells"]["random1"]["random0_minus"]
    assert diff["per_seed"]["0"]["psnr"]["n"] == 2
    assert abs(diff["seed_averaged"]["psnr"]["mean"] - (out["cells"]["random0"]["psnr"]["mean"]
                                                        - out["cells"]["random1"]["psnr"]["mean"])) < 1e-9
    assert (seeds / "results.png").stat().st_size > 5000
    proc = subprocess.run(cmd[:-8] + ["--cells", "nonesuch"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "no such cell" in proc.stderr


@pytest.mark.slow
def test_search_studies_smoke(tiny_dataset, tmp_path):
    """Two studies (space A with 2 nodes, space B with 2 nodes) with tiny budgets: each searched,
    its perturbation-selected cell retrained and scored on the same slices; the table gives the
    difference against the reference study with a CI; a second call reuses every stage, and
    ``--reuse`` reads a study from another run folder (nothing recomputed)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    shutil.copytree(data / "val", data / "test")
    small = {"channels": 4, "cells": 1, "cascades": 1, "epochs": 1, "steps_per_epoch": 2, "crop": 32}
    search_set = {**small, "warmup_epochs": 0, "patience": None, "min_epochs": 0}
    train_set = {**small, "val_volumes": 1}
    results = tmp_path / "res"
    common = ["--data", str(data), "--categories", "magnitude", "--max-slices", "1",
              "--search-set", json.dumps(search_set), "--train-set", json.dumps(train_set)]
    # nodes come from the study name: patch the table to 2-node studies for speed
    script = tmp_path / "studies.py"
    script.write_text((ROOT / "bench" / "search_studies.py").read_text()
                      .replace('STUDIES = {"A2": ("A", 2), "A3": ("A", 3), "A4": ("A", 4), "B3": ("B", 3)}',
                               'STUDIES = {"A2": ("A", 2), "A3": ("A", 2), "A4": ("A", 4), "B3": ("B", 2)}')
                      .replace("Path(__file__).resolve().parent))", f"{str(ROOT / 'bench')!r}))"))
    cmd = [sys.executable, str(script), "--out", str(tmp_path / "run"), "--results", str(results),
           "--studies", "A2", "B3", "--reference", "A2", "--reuse", *common]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((results / "results.json").read_text())["rows"]
    assert set(rows) == {"A2:darts+perturb_seed0", "B3:darts+perturb_seed0"}
    b = rows["B3:darts+perturb_seed0"]
    ops = {op for node in b["genotype"]["nodes"] for op, _ in node}
    assert b["genotype"]["space"] == "B" and ops <= {"sep_conv_3x3", "dil_2_conv_3x3", "conv_9x1_1x9", "skip_connect"}
    assert b["vs_reference"]["psnr"]["n"] == b["n_slices"] == 2  # 1 slice x 4x and 8x
    assert "vs_reference" not in rows["A2:darts+perturb_seed0"]
    assert (results / "results.png").stat().st_size > 0
    for study in ("A2", "B3"):
        assert (tmp_path / "run" / study / "search_darts_seed0" / "reselect_perturb.json").exists()
    # --reuse: the A2 study read from the first run's folder, nothing searched or trained anew
    reused = tmp_path / "res2"
    proc = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "other"), "--results", str(reused),
                           "--studies", "A2", "--reference", "A2", "--reuse", f"A2={tmp_path / 'run' / 'A2'}",
                           *common], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "other").exists()
    again = json.loads((reused / "results.json").read_text())["rows"]
    assert again["A2:darts+perturb_seed0"]["mean_psnr"] == rows["A2:darts+perturb_seed0"]["mean_psnr"]


def test_loss_compare_names_the_best_epoch_and_the_winner(tmp_path):
    """Hand-made histories: the best epoch is the highest mean validation PSNR, the winner per
    metric is read at each run's best epoch, an unfinished run is flagged."""
    def write(loss, rows, done):
        run = tmp_path / "runs" / f"nasn_{loss}"
        run.mkdir(parents=True)
        (run / "history.json").write_text(json.dumps([
            {"epoch": i, "psnr": p, "ssim": q, "psnr_4x": p + 3, "ssim_4x": q + 0.05, "psnr_8x": p - 3,
             "ssim_8x": q - 0.05, "seconds": 1800.0} for i, (p, q) in enumerate(rows)]))
        (run / "events.jsonl").write_text('{"kind": "done"}\n' if done else '{"kind": "step"}\n')

    write("l1", [(26.0, 0.70), (26.4, 0.75), (26.3, 0.76)], True)
    write("ssim", [(25.8, 0.74), (26.1, 0.79)], True)
    write("l1+ssim", [(25.9, 0.74)], False)
    results = tmp_path / "res"
    proc = subprocess.run([sys.executable, "bench/loss_compare.py", "--runs", str(tmp_path / "runs"),
                           "--results", str(results)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((results / "results.json").read_text())
    l1 = report["rows"]["l1"]
    assert (l1["best_epoch"], l1["best"]["psnr"], l1["best"]["ssim"]) == (1, 26.4, 0.75)
    assert (l1["best_ssim_epoch"], l1["best_ssim"]) == (2, 0.76) and l1["train_seconds"] == 5400.0
    assert report["winner"] == {"psnr": "l1", "ssim": "ssim"}
    assert report["rows"]["l1+ssim"]["finished"] is False and report["all_finished"] is False
    assert "(running)" in (results / "results.md").read_text()
    assert (results / "curves.png").stat().st_size > 5000


def test_resume_runs_refuses_an_unknown_run_before_starting_anything():
    proc = subprocess.run(["bash", "scripts/resume-runs.sh", "nasn", "bogus"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "unknown run 'bogus'" in proc.stderr and "started" not in proc.stdout


def test_ship_curves_marks_the_best_epochs(tmp_path):
    """Two run folders' histories (the format ``train`` writes): the best validation epoch of
    each is found by PSNR, the epochs' hours summed, the figure written."""
    runs = []
    for name, psnrs in (("a", [25.0, 26.5, 26.1]), ("b", [24.0, 24.5, 25.5])):
        folder = tmp_path / name
        folder.mkdir()
        history = [{"epoch": i, "train_loss": 1.0 / (i + 1), "lr": 1e-3, "seconds": 1800.0, "psnr_4x": p + 3,
                    "ssim_4x": 0.8, "psnr_8x": p - 3, "ssim_8x": 0.7, "psnr": p, "ssim": 0.7 + i / 100}
                   for i, p in enumerate(psnrs)]
        (folder / "history.json").write_text(json.dumps(history))
        runs.append(f"{'nasn' if name == 'a' else 'dccnn'}={folder}")
    out = tmp_path / "curves.png"
    proc = subprocess.run([sys.executable, "bench/ship_curves.py", "--runs", *runs, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NasN       3 epochs, best epoch 1 (0-based): 26.50 dB / 0.7100, 1.50 h" in proc.stdout
    assert "DCCNN-3    3 epochs, best epoch 2 (0-based): 25.50 dB / 0.7200, 1.50 h" in proc.stdout
    assert out.stat().st_size > 10000


def test_compare_results_pairs_two_runs_slice_by_slice(tmp_path):
    """Two hand-made realistic results: B is A plus a known per-slice shift, so the paired mean
    and the win count are hand counts; runs on other test files are refused."""
    a_psnr, a_ssim = [30.0, 31.0, 29.5, 32.0], [0.90, 0.91, 0.88, 0.93]
    shift = [0.2, -0.1, 0.3, 0.4]

    def write(name, psnr, ssim, files=("sub-01.h5",)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps({
            "test_files": list(files), "weights": {"nasn": f"{name}.safetensors"},
            "scores": {"nasn": {"magnitude": {"4": {"psnr": psnr, "ssim": ssim}}},
                       "tv": {"magnitude": {"4": {"psnr": a_psnr, "ssim": a_ssim}}}}}))
        return folder / "results.json"

    a = write("a", a_psnr, a_ssim)
    b = write("b", [p + d for p, d in zip(a_psnr, shift)], [s + d / 100 for s, d in zip(a_ssim, shift)])
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "bench/compare_results.py", f"{a}:tv", str(b), "--labels", "TV", "B",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((out / "compare.json").read_text())["table"]["magnitude|4"]
    assert row["b_minus_a"]["psnr"]["mean"] == pytest.approx(sum(shift) / 4)
    assert row["b_minus_a"]["ssim"]["mean"] == pytest.approx(sum(shift) / 400)
    assert row["b_minus_a"]["psnr"]["wins"] == 3 and row["b_minus_a"]["psnr"]["n"] == 4
    assert row["b_minus_a"]["psnr"]["ci_low"] <= 0.2 <= row["b_minus_a"]["psnr"]["ci_high"]
    assert "| magnitude | 4x |" in (out / "compare.md").read_text()
    other = write("c", a_psnr, a_ssim, files=("sub-02.h5",))
    proc = subprocess.run([sys.executable, "bench/compare_results.py", str(a), str(other)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "different test files" in proc.stderr
    proc = subprocess.run([sys.executable, "bench/compare_results.py", str(a), f"{b}:unet"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "no scores for method 'unet'" in proc.stderr
