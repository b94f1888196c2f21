"""Comparing two models (techniques/compare.py) against oracles: Pearson and CKA against
brute-force formulas, a model against itself (every unit its own twin, r = 1, CKA diagonal
1), a copy with permuted channels (the Hungarian matching recovers the permutation exactly),
and the layer pairing of the real Lite0/Lite1 specs (no weights loaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtome.data import get_dataset
from microtome.errors import MicrotomeError
from microtome.techniques.compare import (
    Moments,
    Side,
    compare,
    depth_pairing,
    linear_cka,
    match_grids,
    parse_pairs,
    pearson,
    side_pairs,
    spread,
    swapped,
)
from microtome.zoo import get_spec, load_model
from microtome.zoo.sae import with_dictionary_layer
from tests.compare_toys import CONV1_PERM, CONV2_PERM

TOY, PERM = "tests.toy_models:tiny_net", "tests.compare_toys:tiny_net_perm"
PAIRS = [("conv1", "conv1"), ("conv2", "conv2"), ("logits", "logits")]


def _compare(a: str, b: str):
    net_a, spec_a = load_model(a)
    net_b, spec_b = load_model(b)
    return compare(Side(net_a, spec_a, tuple(spec_a.layer_ids)), Side(net_b, spec_b, tuple(spec_b.layer_ids)),
                   get_dataset("samples"), 64, PAIRS)


@pytest.fixture(scope="module")
def itself():
    return _compare(TOY, TOY)


@pytest.fixture(scope="module")
def permuted():
    return _compare(TOY, PERM)


def test_pearson_and_streamed_moments_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + 1000.0  # a large offset: the shift keeps precision
    b = np.concatenate([a[:, :2] * -2 + rng.normal(size=(300, 2)) * 0.1, rng.normal(size=(300, 3))], axis=1)
    b[:, 4] = 7.0  # a constant unit correlates with nothing
    with np.errstate(invalid="ignore"):  # numpy's answer for the constant unit is NaN
        want = np.corrcoef(a.T, b.T)[:5, 5:]
    want[:, 4] = 0.0
    assert np.allclose(pearson(a, b), want, atol=1e-9)
    moments = Moments()
    for chunk in np.array_split(np.arange(300), 4):
        moments.update(torch.from_numpy(a[chunk]).float(), torch.from_numpy(b[chunk]).float())
    assert np.allclose(moments.corr(), want, atol=1e-4)


def test_linear_cka_matches_the_hsic_of_gram_matrices():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 9))
    y[:, :3] += x[:, :3] * 2

    def hsic(ka, kb):  # [n, n] Gram matrices
        h = np.eye(40) - 1 / 40
        return np.trace(ka @ h @ kb @ h)
    kx, ky = x @ x.T, y @ y.T
    want = hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    got = linear_cka([x, y], [y, x @ q * 3.0 + 5.0])
    assert got[0, 0] == pytest.approx(want, rel=1e-9)
    assert got[0, 1] == pytest.approx(1.0)  # invariant to rotation, scale and offset
    assert got[1, 0] == pytest.approx(1.0)


def test_a_model_against_itself_maps_every_unit_to_itself(itself):
    assert itself.images == len(get_dataset("samples"))
    for pair, result in itself.pairs.items():
        units = np.arange(result.r.shape[0])
        assert (result.partner_a == units).all() and (result.partner_b == units).all(), pair
        assert np.allclose(np.diag(result.r), 1.0, atol=1e-6) and np.allclose(np.diag(result.r_spatial), 1.0, atol=1e-4)
        assert (result.r.argmax(axis=1) == units).all()
    assert np.allclose(np.diag(itself.cka), 1.0)
    assert (itself.cka <= 1.0 + 1e-9).all()


def test_the_matching_recovers_a_permutation_of_the_channels_exactly(permuted):
    # unit j of the copy's conv1 is unit CONV1_PERM[j] of the original: its partner
    for layer, perm in (("conv1", CONV1_PERM), ("conv2", CONV2_PERM)):
        result = permuted.pairs[(layer, layer)]
        assert result.partner_b.tolist() == list(perm)
        assert result.partner_a.tolist() == np.argsort(perm).tolist()
        matched = result.r[np.arange(len(perm)), result.partner_a]
        assert np.allclose(matched, 1.0, atol=1e-6)
    assert (permuted.pairs[("logits", "logits")].partner_a == np.arange(3)).all()  # logits were not permuted
    assert np.allclose(np.diag(permuted.cka), 1.0)  # CKA does not see a permutation


def test_grids_are_matched_on_the_coarser_one():
    fine, coarse = torch.ones(2, 3, 15, 15) * 2.0, torch.zeros(2, 4, 14, 14)
    a, b = match_grids(fine, coarse)
    assert a.shape == (2, 3, 14, 14) and b.shape == (2, 4, 14, 14) and torch.allclose(a, torch.full_like(a, 2.0))


def test_depth_pairing_of_lite0_and_lite1_follows_the_stages():
    lite0, lite1 = get_spec("efficientnet_lite0"), get_spec("efficientnet_lite1")
    pairs = depth_pairing(lite0, lite1)
    assert set(pairs) == set(lite0.layer_ids)
    assert {k: pairs[k] for k in ("stem", "block0", "block5", "block8", "block10", "block15", "head", "logits")} == {
        "stem": "stem", "block0": "block0", "block5": "block7", "block8": "block11", "block10": "block14",
        "block15": "block20", "head": "head", "logits": "logits"}
    for a, b in pairs.items():  # stage-aware: the partner has as many channels (same kind of block)
        assert lite0.layer(a).channels == lite1.layer(b).channels, (a, b)
    back = depth_pairing(lite1, lite0)
    assert back["block14"] == "block10" and back["head"] == "head"


def test_dictionary_layers_pair_with_their_bases_partner_unless_told():
    lite0, lite1 = get_spec("efficientnet_lite0"), get_spec("efficientnet_lite1")
    sae = lambda spec, base: with_dictionary_layer(spec, base, 4 * spec.layer(base).channels)  # noqa: E731
    with_both = depth_pairing(sae(lite0, "block10"), sae(lite1, "block14"))
    assert with_both["block10.sae"] == "block14" and with_both["block10"] == "block14"
    assert depth_pairing(sae(lite0, "block10"), lite1) == with_both  # B's dictionaries change nothing
    assert "block14.sae" not in depth_pairing(sae(lite1, "block14"), lite0).values()
    assert parse_pairs("block10.sae=block14.sae", sae(lite0, "block10"), sae(lite1, "block14")) == [
        ("block10.sae", "block14.sae")]


def test_pairs_by_hand_and_their_errors():
    lite0, lite1 = get_spec("efficientnet_lite0"), get_spec("efficientnet_lite1")
    assert parse_pairs(" block10=block14, head=head ", lite0, lite1) == [("block10", "block14"), ("head", "head")]
    assert side_pairs("block10=block14,block10=block13", lite0, lite1) == {"block10": "block14"}
    assert swapped("block10=block14,head=head") == "block14=block10,head=head"
    with pytest.raises(MicrotomeError, match="did you mean block10"):
        parse_pairs("blok10=block14", lite0, lite1)
    with pytest.raises(MicrotomeError, match="in efficientnet_lite1; did you mean block14"):
        parse_pairs("block10=blok14", lite0, lite1)
    with pytest.raises(MicrotomeError, match="A_LAYER=B_LAYER"):
        parse_pairs("block10", lite0, lite1)


def test_images_are_spread_over_the_dataset():
    assert spread(10, 20) == list(range(10))
    assert spread(1000, 4) == [0, 333, 666, 999]
