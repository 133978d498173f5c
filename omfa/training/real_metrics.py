"""The field's evaluation protocol on real data (VITON-HD, DressCode): SSIM, LPIPS, FID, KID.

Try-on papers (VITON-HD, LaDI-VTON, StableVITON, IDM-VTON, CatVTON, OMFA)
report two settings on the test split:
- paired: each person re-dressed in the garment they already wear, so every
  result has a ground truth: SSIM and LPIPS per pair, and FID and KID between
  the set of results and the set of real test photos;
- unpaired: garments swapped, no ground truth: FID and KID only.

Every metric is torchmetrics' (SSIM with an 11x11 Gaussian window, sigma 1.5;
LPIPS with the AlexNet backbone and its linear heads; FID and KID on the
2048-d pool features of the TF-FID Inception-v3 that torch-fidelity ports,
KID with torch-fidelity's defaults: subsets of 1000, 100 subsets, a cubic
polynomial kernel), not hand-written.

Nothing is downloaded. LPIPS needs torchvision and its ImageNet backbone
weights, FID and KID need torch-fidelity and the Inception weights; each
is built only when its weights file is on disk, in <hub_dir>/checkpoints
(default: torch's hub cache, $TORCH_HOME/hub, where the libraries themselves
would store it); otherwise the metric is skipped and `skipped` says which
file is missing and how to get it.

Images are float (N, 3, H, W) in [-1, 1], the model's space (`omfa.canvas`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

# from the modules: torchmetrics.image exports FID and KID only when torch-fidelity is installed
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.image.ssim import StructuralSimilarityIndexMeasure

# torch-fidelity's port of the TF Inception-v3 that FID was defined with (its file name is its hash)
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FID_WEIGHTS}"
# LPIPS backbones: the ImageNet weights torchvision loads for each (DEFAULT of its weight enum;
# the file names carry their hash, so they do not change under a release)
LPIPS_WEIGHTS_URL: dict[str, str] = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}
# what the extractors import beyond this project's requirements (on PyPI both pull a CUDA torch: install
# the builds that match the installed torch)
INSTALL = {"torch_fidelity": "torch-fidelity==0.4.0", "torchvision": "torchvision (the build for the installed torch)"}
FID_PACKAGES = ("torch_fidelity", "torchvision")
LPIPS_PACKAGES = ("torchvision",)
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _checkpoints(hub_dir: str | os.PathLike | None) -> Path:
    """The folder torchvision and torch-fidelity keep weights in: <hub_dir>/checkpoints (default: torch's hub)."""
    return Path(hub_dir or torch.hub.get_dir()) / "checkpoints"


def _unavailable(metric: str, packages: tuple[str, ...], file: Path, url: str) -> str | None:
    """None when `metric` can be built here without a download, else what is missing and how to get it."""
    needs = []
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        needs.append("pip install " + " and ".join(INSTALL[p] for p in missing))
    if not file.is_file():
        needs.append(
            f"its weights {file.name} in {file.parent} (on a machine with network, download {url}, then copy it "
            "there or pass hub_dir= a folder whose checkpoints/ holds it)"
        )
    return f"{metric} skipped: needs {' and '.join(needs)}" if needs else None


def inception_features(hub_dir: str | os.PathLike | None = None) -> nn.Module | str:
    """The FID Inception (2048-d pool features of uint8 (N, 3, H, W) images), or why it cannot be built here."""
    file = _checkpoints(hub_dir) / FID_WEIGHTS
    why = _unavailable("FID and KID", FID_PACKAGES, file, FID_WEIGHTS_URL)
    if why:
        return why
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(file))


def lpips_metric(net: str = "alex", hub_dir: str | os.PathLike | None = None) -> nn.Module | str:
    """torchmetrics' LPIPS on `net`, or why it cannot be built here."""
    if net not in LPIPS_WEIGHTS_URL:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(LPIPS_WEIGHTS_URL)}")
    url = LPIPS_WEIGHTS_URL[net]
    file = _checkpoints(hub_dir) / Path(url).name
    why = _unavailable(f"LPIPS ({net})", LPIPS_PACKAGES, file, url)
    if why:
        return why
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    # torchvision reads <hub>/checkpoints/<name> and downloads only when it is absent: point the hub there
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(file.parent.parent))
    try:
        return LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True)
    finally:
        torch.hub.set_dir(previous)


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().clamp(-1, 1).add(1).div(2)


class RealMetrics:
    """Accumulates one setting's metrics over batches of generated and real images.

    `paired=True`: `update(generated, real)` gets each result with its ground
    truth in the same order (SSIM, LPIPS, FID, KID); `paired=False`: two sets
    of any sizes (FID, KID). `features` replaces the Inception (a module from
    uint8 (N, 3, H, W) images to (N, F) features with a `num_features`
    attribute), e.g. for another feature space or for tests.
    """

    def __init__(
        self,
        paired: bool,
        lpips_net: str = "alex",
        hub_dir: str | os.PathLike | None = None,
        features: nn.Module | None = None,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        device: str | torch.device = "cpu",
    ):
        self.paired = paired
        self.device = torch.device(device)
        self.skipped: dict[str, str] = {}
        self.ssim = self.lpips = self.fid = self.kid = None
        if paired:
            self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(self.device)
            lpips = lpips_metric(lpips_net, hub_dir)
            if isinstance(lpips, str):
                self.skipped["LPIPS"] = lpips
            else:
                self.lpips = lpips.to(self.device)
        extractor = features if features is not None else inception_features(hub_dir)
        if isinstance(extractor, str):
            self.skipped["FID"] = self.skipped["KID"] = extractor
        else:
            # one extractor, shared: FID and KID see the same features
            self.fid = FrechetInceptionDistance(feature=extractor).to(self.device)
            self.kid = KernelInceptionDistance(feature=extractor, subsets=kid_subsets, subset_size=kid_subset_size).to(
                self.device
            )

    @torch.no_grad()
    def update(self, generated: torch.Tensor | None, real: torch.Tensor | None) -> None:
        """generated, real: float (N, 3, H, W) in [-1, 1].

        Paired: both, the same N, row i the truth of result i. Unpaired: the
        sets may differ in size, so either may be None.
        """
        for name, x in (("generated", generated), ("real", real)):
            if x is None and self.paired:
                raise ValueError(f"paired scoring needs {name} images with every batch")
            if x is not None and (x.ndim != 4 or x.shape[1] != 3):
                raise ValueError(f"{name} images must be (N, 3, H, W), got {tuple(x.shape)}")
        if self.paired:
            if generated.shape != real.shape:
                raise ValueError(
                    f"paired images need equal shapes, got {tuple(generated.shape)} and {tuple(real.shape)}"
                )
            generated, real = generated.to(self.device), real.to(self.device)
            self.ssim.update(_unit(generated), _unit(real))
            if self.lpips is not None:
                self.lpips.update(_unit(generated), _unit(real))
        if self.fid is not None:
            for x, is_real in ((real, True), (generated, False)):
                if x is not None:
                    u8 = _uint8(x.to(self.device))
                    self.fid.update(u8, real=is_real)
                    self.kid.update(u8, real=is_real)

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        """{metric: value} for every metric that ran ("KID_std" beside "KID"); see `skipped` for the rest."""
        out: dict[str, float] = {}
        if self.ssim is not None:
            out["SSIM"] = self.ssim.compute().item()
        if self.lpips is not None:
            out["LPIPS"] = self.lpips.compute().item()
        if self.fid is not None:
            out["FID"] = self.fid.compute().item()
            n = min(sum(f.shape[0] for f in self.kid.real_features), sum(f.shape[0] for f in self.kid.fake_features))
            # a test set smaller than the subset size is scored on subsets of all its images
            self.kid.subset_size = min(self.kid.subset_size, n)
            with torch.random.fork_rng(devices=[]):  # the subsets are drawn at random: same images, same KID
                torch.manual_seed(0)
                mean, std = self.kid.compute()
            out["KID"], out["KID_std"] = mean.item(), std.item()
        return out


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _images_in(folder: Path) -> dict[str, Path]:
    """The folder's images by name without suffix: results saved as PNG pair with a dataset's JPEG truths."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise ValueError(f"{files[path.stem].name} and {path.name} in {folder} share the name {path.stem!r}")
        files[path.stem] = path
    if not files:
        raise ValueError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def _load(paths: list[Path], size_hw: tuple[int, int]) -> torch.Tensor:
    """Images -> float (N, 3, H, W) in [-1, 1], resized (bicubic) to size_hw when they differ."""
    import numpy as np
    import PIL.Image

    from omfa.canvas import image_to_tensor

    out = []
    for path in paths:
        with PIL.Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size_hw[1], size_hw[0]):
                image = image.resize((size_hw[1], size_hw[0]), PIL.Image.Resampling.BICUBIC)
            out.append(image_to_tensor(np.asarray(image)))
    return torch.stack(out)


def score_folders(
    generated: str | os.PathLike,
    real: str | os.PathLike,
    paired: bool,
    size_hw: tuple[int, int] | None = None,
    hub_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, float], dict[str, str]]:
    """Score a folder of results against a folder of real test images -> (metrics, skipped).

    Paired: results and truths match by file name without its suffix (`00891_00.png` with the
    dataset's `00891_00.jpg`). Every image is scored at
    `size_hw` (default: the first real image's size).
    """
    gen_files, real_files = _images_in(Path(generated)), _images_in(Path(real))
    if paired:
        unmatched = sorted(set(gen_files) ^ set(real_files))
        if unmatched:
            raise ValueError(
                f"paired scoring matches files by name; {len(unmatched)} have no partner, e.g. {unmatched[0]}"
            )
        real_files = {name: real_files[name] for name in gen_files}
    if size_hw is None:
        import PIL.Image

        with PIL.Image.open(next(iter(real_files.values()))) as first:
            size_hw = (first.height, first.width)
    metrics = RealMetrics(paired=paired, hub_dir=hub_dir, device=device)
    gen_paths, real_paths = list(gen_files.values()), list(real_files.values())
    for i in range(0, max(len(gen_paths), len(real_paths)), batch_size):
        g, r = gen_paths[i : i + batch_size], real_paths[i : i + batch_size]
        # unpaired sets may differ in size: a batch feeds what each set still has
        metrics.update(_load(g, size_hw) if g else None, _load(r, size_hw) if r else None)
    return metrics.compute(), metrics.skipped
