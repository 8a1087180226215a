"""TruncatedTL's SVCCA cut-point detection: the overlap rule on synthetic numbers, then end to end
on toy models where the answer is known."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from medapt.analysis import LimitedDataWarning, detect_cut_point, first_overlap_point, overlap_table
from medapt.errors import ConfigError, ShapeMismatchError, UnknownNameError

# Three draws at three cut points, worked by hand:
#   cut 1: finetuned .95 .96 .97 vs random .30 .35 .40 — apart under both rules.
#   cut 2: finetuned .50 .60 .70 (mean .6, s.d. .1 → [.4, .8]; range [.5, .7])
#          random    .30 .35 .40 (mean .35, s.d. .05 → [.25, .45]; range [.3, .4])
#          → mean ± 2 s.d. intervals intersect on [.4, .45]; the ranges do not.
#   cut 3: finetuned .36 .38 .40 vs random .30 .35 .40 — the ranges touch at .40 (touching counts).
FINETUNED = [[0.95, 0.50, 0.36], [0.96, 0.60, 0.38], [0.97, 0.70, 0.40]]
RANDOM = [[0.30, 0.30, 0.30], [0.35, 0.35, 0.35], [0.40, 0.40, 0.40]]


def test_mean_2sd_rule_on_hand_worked_numbers():
    t = overlap_table(FINETUNED, RANDOM)
    assert t["overlap"].tolist() == t["reached"].tolist() == [False, True, True]
    assert not t["below"].any()
    np.testing.assert_allclose(t.loc[1, ["finetuned_low", "finetuned_high", "random_low", "random_high"]]
                               .astype(float), [0.4, 0.8, 0.25, 0.45])
    assert first_overlap_point(FINETUNED, RANDOM) == 2


def test_minmax_rule_on_hand_worked_numbers_touching_counts():
    t = overlap_table(FINETUNED, RANDOM, rule="minmax")
    assert t["overlap"].tolist() == [False, False, True]
    assert first_overlap_point(FINETUNED, RANDOM, rule="minmax") == 3


def test_a_finetuned_distribution_below_chance_ends_the_search_too():
    # cut 2 jumps from above the random interval to wholly below it: no intersection anywhere,
    # but the fine-tuned similarity has crossed chance level there.
    ft = [[0.90, 0.10, 0.50], [0.92, 0.12, 0.52]]
    rd = [[0.30, 0.30, 0.30], [0.32, 0.32, 0.32]]
    t = overlap_table(ft, rd, rule="minmax")
    assert t["overlap"].tolist() == [False, False, False]
    assert t["below"].tolist() == [False, True, False]
    assert t["reached"].tolist() == [False, True, False]
    assert first_overlap_point(ft, rd, rule="minmax") == 2


def test_cut_point_labels_and_no_overlap():
    assert first_overlap_point(FINETUNED, RANDOM, cut_points=[4, 8, 14]) == 8
    wide = pd.DataFrame(FINETUNED, columns=[1, 5, 9])
    assert first_overlap_point(wide, RANDOM, rule="minmax") == 9  # a DataFrame's columns are the labels
    never = [[0.9, 0.9, 0.9], [0.95, 0.95, 0.95]]
    assert first_overlap_point(never, RANDOM) is None


def test_overlap_input_errors():
    with pytest.raises(ShapeMismatchError, match="3 cut points but random values 2"):
        overlap_table(FINETUNED, [[0.1, 0.2], [0.2, 0.3]])
    with pytest.raises(ConfigError, match="at least 2 draws.*rule='minmax'"):
        overlap_table(FINETUNED[:1], RANDOM)
    assert overlap_table(FINETUNED[:1], RANDOM, rule="minmax")["overlap"].tolist() == [False, False, True]
    with pytest.raises(ConfigError, match="NaN"):
        overlap_table([[np.nan, 1, 1], [1, 1, 1]], RANDOM)
    with pytest.raises(ShapeMismatchError, match="expected \\(draws, cut points\\)"):
        overlap_table([0.1, 0.2, 0.3], RANDOM)
    with pytest.raises(UnknownNameError, match="overlap rule"):
        overlap_table(FINETUNED, RANDOM, rule="iqr")


def _toy_pair(toys):
    """Pretrained: four seeded 1×1 convs, so every unit's GAP output is a full-rank linear map of
    the channel means. 'Fine-tuned': units 1–2 unchanged, unit 3 replaced by sin(50·x), whose GAP is
    unrelated to the channel means — from cut point 3 on the two share nothing beyond chance."""
    convs = [toys.fixed_conv(6, 6, s) for s in range(4)]
    pretrained = toys.toy_model(*convs)
    scramble = toys.Lambda(lambda x: torch.sin(50 * convs[2](x)))
    finetuned = toys.toy_model(convs[0], convs[1], scramble, convs[3])
    return pretrained, finetuned


def test_detect_cut_point_finds_the_first_changed_unit(toys):
    pretrained, finetuned = _toy_pair(toys)
    images = np.random.default_rng(0).normal(size=(300, 6, 4, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LimitedDataWarning)  # 150 images per subset, 6 channels: no warning
        d = detect_cut_point(pretrained, finetuned, images, n_draws=6, seed=0)
    assert d.cut_point == 3 and d.unit == "u3"
    assert d.overlap["overlap"].tolist()[:2] == [False, False]
    ft = d.draws[d.draws["pair"] == "finetuned"]
    np.testing.assert_allclose(ft[ft["cut_point"] <= 2]["value"], 1.0, atol=1e-6)
    assert set(d.draws["n"]) == {150} and len(d.draws) == 6 * 2 * 4
    again = detect_cut_point(pretrained, finetuned, images, n_draws=6, seed=0)
    pd.testing.assert_frame_equal(d.draws, again.draws)  # deterministic for a seed


def test_detect_cut_point_warns_when_subsets_are_too_small_for_the_units(toys):
    pretrained, finetuned = _toy_pair(toys)
    images = np.random.default_rng(0).normal(size=(12, 6, 4, 4)).astype(np.float32)
    with pytest.warns(LimitedDataWarning, match=r"cut points \[1, 2, 3, 4\], subsets of 6 images"):
        d = detect_cut_point(pretrained, finetuned, images, n_draws=3)
    assert d.draws["note"].str.contains("inflated").all()


def test_detect_cut_point_argument_errors(toys):
    pretrained, finetuned = _toy_pair(toys)
    images = np.zeros((10, 6, 4, 4), np.float32)
    with pytest.raises(ConfigError, match="subset_fraction"):
        detect_cut_point(pretrained, finetuned, images, subset_fraction=0)
    with pytest.raises(ConfigError, match="n_draws"):
        detect_cut_point(pretrained, finetuned, images, n_draws=0)
    with pytest.raises(ConfigError, match="2 for rule 'mean2sd'.*got 1"):
        detect_cut_point(pretrained, finetuned, images, n_draws=1)
    with pytest.raises(UnknownNameError, match="overlap rule"):
        detect_cut_point(pretrained, finetuned, images, rule="range")
