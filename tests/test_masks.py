import numpy as np
import pytest
import torch

from backend.masks import (
    EquiSpacedMaskFunc,
    RandomMaskFunc,
    center_block,
    default_center_fraction,
    make_mask,
    seed_from_filename,
)


def test_center_block_placement_by_hand():
    # fastMRI: start = (W - n + 1) // 2
    assert np.flatnonzero(center_block(16, 4)).tolist() == [6, 7, 8, 9]
    assert np.flatnonzero(center_block(15, 4)).tolist() == [6, 7, 8, 9]
    assert np.flatnonzero(center_block(15, 3)).tolist() == [6, 7, 8]


def test_equispaced_hand_computed_lines():
    m = EquiSpacedMaskFunc([4], [0.25])(16, offset=1)
    # centre 4 columns 6..9, outer every 4th from 1: 1, 5, 9, 13
    assert np.flatnonzero(m.lines).tolist() == [1, 5, 6, 7, 8, 9, 13]
    assert m.num_low_frequencies == 4
    assert m.realised_acceleration == pytest.approx(16 / 7)


def test_random_mask_reproduces_its_draws_by_hand():
    W, acc, cf, seed = 100, 4, 0.08, 1234
    m = RandomMaskFunc([acc], [cf])(W, seed=seed)
    rng = np.random.RandomState(seed)
    rng.randint(1)  # fastMRI's choice of (centre fraction, acceleration)
    num_low = round(W * cf)
    prob = (W / acc - num_low) / (W - num_low)
    expected = (rng.uniform(size=W) < prob) | center_block(W, num_low)
    assert np.array_equal(m.lines, expected)


def test_paper_default_center_fractions():
    assert default_center_fraction(4) == pytest.approx(0.08)
    assert default_center_fraction(8) == pytest.approx(0.04)
    assert make_mask("random", 320, 4, seed=0).num_low_frequencies == round(320 * 0.08)
    assert make_mask("equispaced", 320, 8, seed=0).num_low_frequencies == round(320 * 0.04)


def test_same_seed_same_mask_and_global_rng_untouched():
    np.random.seed(7)
    torch.manual_seed(7)
    before_np = np.random.get_state()[1].copy()
    before_torch = torch.get_rng_state().clone()
    func = RandomMaskFunc([8])
    a = func(368, seed=(1, 2, 3))
    func(368)  # an unseeded draw in between
    b = func(368, seed=(1, 2, 3))
    assert np.array_equal(a.lines, b.lines)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert torch.equal(torch.get_rng_state(), before_torch)


def test_realised_acceleration_close_to_nominal_on_average():
    for acc in (4, 8):
        accs = [make_mask("random", 368, acc, seed=s).realised_acceleration for s in range(200)]
        n_lines = [368 / a for a in accs]
        assert np.mean(n_lines) == pytest.approx(368 / acc, rel=0.03)
        eq = make_mask("equispaced", 368, acc, seed=0)
        assert 368 / eq.lines.sum() == pytest.approx(eq.realised_acceleration)


def test_seed_from_filename_is_fastmri_convention():
    assert seed_from_filename("/data/file1000.h5") == tuple(map(ord, "file1000.h5"))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        make_mask("spiral", 100)
    with pytest.raises(ValueError):
        RandomMaskFunc([4], [0.5])  # centre alone exceeds 1/4
    with pytest.raises(ValueError):
        RandomMaskFunc([4, 8], [0.08])


fastmri_subsample = pytest.importorskip("fastmri.data.subsample", reason="fastmri not installed")


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("W", [368, 320, 101])
@pytest.mark.parametrize("acc,cf", [(4, 0.08), (8, 0.04), (6, 0.06)])
def test_matches_fastmri_package(kind, W, acc, cf):
    theirs_cls = {"random": fastmri_subsample.RandomMaskFunc, "equispaced": fastmri_subsample.EquiSpacedMaskFunc}[kind]
    for seed in [0, 42, tuple(map(ord, "file1001.h5"))]:
        theirs, num_low = theirs_cls([cf], [acc])((1, W, 1), seed=seed)
        ours = make_mask(kind, W, acc, cf, seed=seed)
        assert np.array_equal(theirs.numpy().ravel().astype(bool), ours.lines)
        assert num_low == ours.num_low_frequencies


def test_gaussian_masks_have_exact_line_counts_and_a_density_falling_off_the_centre():
    """Hand counts: round(W / acc) lines in all, the fastMRI centre block among them, the same
    mask for the same seed; over many seeds the outer columns near the centre are sampled more
    often than those at the edge, symmetric about the centre (within sampling noise)."""
    from backend.masks import GAUSSIAN_SIGMA, center_block

    W = 368
    for acc in (4, 8):
        masks = [make_mask("gaussian", W, acc, seed=s) for s in range(400)]
        num_low = round(W * 0.32 / acc)
        assert {int(m.lines.sum()) for m in masks} == {round(W / acc)}
        assert all(m.lines[center_block(W, num_low)].all() for m in masks)
        freq = np.mean([m.lines for m in masks], axis=0)
        outer = ~center_block(W, num_low)
        d = np.abs(np.arange(W) - W // 2) / (W / 2)
        near, mid, far = (freq[outer & (lo <= d) & (d < hi)].mean() for lo, hi in ((0, 0.2), (0.4, 0.6), (0.8, 1.01)))
        assert near > mid > far and far < 0.25 * near
        left, right = freq[: W // 2 - num_low], freq[W // 2 + num_low:][::-1][: W // 2 - num_low]
        assert abs(left.sum() - right.sum()) < 0.05 * left.sum()
    assert GAUSSIAN_SIGMA == 0.4
    a, b = make_mask("gaussian", W, 4, seed=(1, 2, 3)), make_mask("gaussian", W, 4, seed=(1, 2, 3))
    np.testing.assert_array_equal(a.lines, b.lines)
    assert not np.array_equal(a.lines, make_mask("gaussian", W, 4, seed=(1, 2, 4)).lines)


def test_unknown_mask_kinds_are_refused_by_the_configs():
    from backend.config import ReconConfig, TrainConfig

    with pytest.raises(ValueError, match="unknown mask type 'radial'"):
        ReconConfig(mask="radial")
    with pytest.raises(ValueError, match="mask_kinds"):
        TrainConfig(mask_kinds=("random", "spiral"))
    assert TrainConfig(mask_kinds=("gaussian",)).mask_kinds == ("gaussian",)


def test_mask_lines_in_the_config_are_the_mask_used(sample_file):
    """ReconConfig.mask_lines (the GUI's edited mask) is the mask of the reconstruction: the
    same lines as a mask file holding them; bad lines are refused by the config."""
    from backend.config import ReconConfig
    from backend.errors import InputError
    from backend.io import open_volume
    from backend.recon import volume_mask

    lines = np.zeros(224, dtype=int)
    lines[100:124] = 1
    lines[::5] = 1
    with open_volume(sample_file) as volume:
        mask, seed = volume_mask(volume.info, ReconConfig(mask_lines=tuple(lines)))
        np.testing.assert_array_equal(mask.lines, lines.astype(bool))
        assert seed is None and mask.realised_acceleration == pytest.approx(224 / lines.sum())
        with pytest.raises(InputError, match="has 10 columns, the data has 224"):
            volume_mask(volume.info, ReconConfig(mask_lines=(1,) * 10))
    for bad, problem in [((0,) * 8, "samples no k-space line"), ((1, 2, 0), "only 0 and 1"),
                         (("1", 0), "only 0/1")]:
        with pytest.raises(ValueError, match=problem):
            ReconConfig(mask_lines=bad)
    with pytest.raises(ValueError, match="not both"):
        ReconConfig(mask_lines=(1, 0, 1), mask_file="m.npy")


def test_a_2d_pattern_in_the_config_is_the_mask_used(sample_file):
    """ReconConfig.mask_lines as rows (the GUI's painted 2-D pattern): the pattern over the
    k-space grid, its columns and realised acceleration by hand; wrong shapes refused."""
    from backend.config import ReconConfig
    from backend.errors import InputError
    from backend.io import open_volume
    from backend.recon import volume_mask

    pattern = np.zeros((224, 224), dtype=np.uint8)
    pattern[100:124, 100:124] = 1
    pattern[::7, ::3] = 1
    config = ReconConfig(mask_lines=pattern)  # an array becomes plain nested tuples
    assert isinstance(config.mask_lines[0], tuple) and config.mask_lines[0][:4] == (1, 0, 0, 1)
    with open_volume(sample_file) as volume:
        mask, seed = volume_mask(volume.info, config)
        np.testing.assert_array_equal(mask.pattern, pattern.astype(bool))
        np.testing.assert_array_equal(mask.lines, pattern.any(0))
        assert seed is None and mask.realised_acceleration == pytest.approx(224 * 224 / pattern.sum())
        with pytest.raises(InputError, match="the mask has 10x224, the data has 224x224"):
            volume_mask(volume.info, ReconConfig(mask_lines=((1,) * 224,) * 10))
    for bad, problem in [(((0, 0), (0, 0)), "samples no k-space line"), (((1, 0), (1,)), "differ in length"),
                         (((1, 2), (0, 1)), "only 0 and 1"), ([[1, 0], 1], "list of rows")]:
        with pytest.raises(ValueError, match=problem):
            ReconConfig(mask_lines=bad)
