"""The real-data protocol: torchmetrics' SSIM, FID and KID against closed forms; skips without weights."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity
from torch import nn

from omfa.training.real_metrics import FID_WEIGHTS_URL, RealMetrics

D = 6  # feature size of the test extractor


class FirstPixels(nn.Module):
    """Test features: the first D values of each uint8 image, /255 (no weights needed)."""

    num_features = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :D].double() / 255


def images(n: int, seed: int, hw: tuple[int, int] = (24, 20)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *hw, generator=g) * 2 - 1


def features(x: torch.Tensor) -> np.ndarray:
    u8 = x.clamp(-1, 1).add(1).mul(127.5).round()
    return u8.flatten(1)[:, :D].double().numpy() / 255


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_fid_and_kid_match_their_closed_forms():
    fake, real = images(36, 1), images(36, 2) * 0.5  # different distributions; KID's one subset takes all 36
    m = RealMetrics(paired=False, features=FirstPixels(), kid_subsets=1, kid_subset_size=10**6)
    m.update(fake[:25], real[:10])
    m.update(fake[25:], None)  # unpaired sets arrive in batches of their own sizes
    m.update(None, real[10:])
    got = m.compute()
    x, y = features(fake), features(real)
    # FID = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))  (Heusel et al. 2017)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    fid = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(sx + sy - 2 * scipy.linalg.sqrtm(sx @ sy).real)
    # KID: the unbiased MMD^2 with k(a, b) = (a.b / D + 1)^3 (Binkowski et al. 2018), one subset of all samples
    k = lambda a, b: (a @ b.T / D + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m_, n_ = len(x), len(y)
    kid = (kxx.sum() - np.trace(kxx)) / (m_ * (m_ - 1)) + (kyy.sum() - np.trace(kyy)) / (n_ * (n_ - 1)) - 2 * kxy.mean()
    print(f"FID {got['FID']:.6f} (closed form {fid:.6f}), KID {got['KID']:.6f} (closed form {kid:.6f})")
    assert got["FID"] == pytest.approx(fid, rel=1e-4)
    assert got["KID"] == pytest.approx(kid, rel=1e-4, abs=1e-9)
    assert "SSIM" not in got and "LPIPS" not in got  # unpaired: no ground truth


def test_same_sets_score_zero_fid():
    x = images(30, 3)
    m = RealMetrics(paired=False, features=FirstPixels(), kid_subsets=1, kid_subset_size=30)
    m.update(x, x)
    got = m.compute()
    assert abs(got["FID"]) < 1e-5


def test_paired_ssim_matches_skimage_gaussian_ssim():
    truth = images(3, 4, (48, 40))
    generated = (truth + 0.8 * images(3, 5, (48, 40))).clamp(-1, 1)
    m = RealMetrics(paired=True, features=FirstPixels())
    m.update(generated, truth)
    got = m.compute()["SSIM"]
    ref = np.mean(
        [
            structural_similarity(
                g.permute(1, 2, 0).add(1).div(2).numpy(),
                t.permute(1, 2, 0).add(1).div(2).numpy(),
                data_range=1.0,
                channel_axis=2,
                gaussian_weights=True,  # the Wang et al. 2004 protocol: 11x11 Gaussian, sigma 1.5
                sigma=1.5,
                use_sample_covariance=False,
            )
            for g, t in zip(generated, truth)
        ]
    )
    print(f"SSIM torchmetrics {got:.5f}, skimage {ref:.5f}")
    assert got == pytest.approx(ref, abs=2e-3)  # the two treat the 5-px border differently
    assert 0.2 < got < 0.95


def test_missing_weights_skip_with_a_message_naming_the_metric_and_the_file(tmp_path):
    m = RealMetrics(paired=True, hub_dir=tmp_path)  # an empty hub: nothing on disk
    assert set(m.skipped) == {"LPIPS", "FID", "KID"}
    assert m.skipped["FID"] == m.skipped["KID"]
    assert m.skipped["FID"].startswith("FID and KID skipped")
    assert f"download {FID_WEIGHTS_URL}" in m.skipped["FID"] and str(tmp_path / "checkpoints") in m.skipped["FID"]
    assert m.skipped["LPIPS"].startswith("LPIPS (alex) skipped")
    assert "alexnet-owt-7be5be79.pth" in m.skipped["LPIPS"]
    m.update(images(2, 6), images(2, 7))
    assert set(m.compute()) == {"SSIM"}


def test_bad_inputs_raise_clear_errors():
    m = RealMetrics(paired=True, features=FirstPixels())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m.update(torch.zeros(2, 24, 20), torch.zeros(2, 24, 20))
    with pytest.raises(ValueError, match="equal shapes"):
        m.update(images(2, 1), images(3, 1))


def test_omfa_score_reads_two_folders_and_names_what_it_skipped(tmp_path, capsys):
    import PIL.Image

    from omfa.cli import main

    rng = np.random.default_rng(0)
    for folder in ("gen", "real"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
            # results are PNG, the dataset's truths JPEG (as VITON-HD's): they pair by name alone
            PIL.Image.fromarray(pixels).save(tmp_path / folder / f"{i:02d}.{'png' if folder == 'gen' else 'jpg'}")
    hub = tmp_path / "hub"  # empty: LPIPS, FID and KID skip here
    argv = ["score", "--generated", str(tmp_path / "gen"), "--real", str(tmp_path / "real"), "--hub-dir", str(hub)]
    assert main([*argv, "--paired", "--json"]) == 0
    out = capsys.readouterr()
    assert set(json.loads(out.out)) == {"SSIM"}
    assert "LPIPS" in out.err and "FID and KID skipped" in out.err
    (tmp_path / "real" / "00.jpg").rename(tmp_path / "real" / "99.jpg")
    with pytest.raises(SystemExit):
        main([*argv, "--paired"])
    assert "no partner" in capsys.readouterr().err
