"""README's "Train on your own data", run as written at tiny size: the dry run, the training command
(in one process: tests/test_backbone_ddp.py launches two), the scoring script and `omfa score`.

A tiny random FLUX pipeline folder stands in for `models/FLUX.1-dev` and the VITON-HD fixture for
`/data/VITON-HD`; the commands get `--size 32x24` and a few steps added, nothing else changes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from test_train_scale import flux_pipeline_folder

from omfa.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
TINY = ["--size", "32x24"]


def section() -> str:
    text = README.read_text()
    start = text.index("## Train on your own data")
    return text[start : text.index("\n## ", start + 1)]


def commands(text: str) -> list[list[str]]:
    """Each `omfa ...` or `accelerate launch ...` command of the section's bash blocks, as argv."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.strip())
            if words and words[0] in ("omfa", "accelerate"):
                out.append(words)
    return out


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_readme_commands_run_as_written(viton_hd, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the README's relative paths (models/, runs/, results/) land here
    flux_pipeline_folder(Path("models/FLUX.1-dev"))
    # every test person listed, as in the real test_pairs.txt (the fixture lists one of two)
    (viton_hd / "test_pairs.txt").write_text("00891_00.jpg 01430_00.jpg\n01430_00.jpg 00891_00.jpg\n")
    text = section().replace("/data/VITON-HD", str(viton_hd))
    dry, train, score = commands(text)

    assert dry[:2] == ["omfa", "train"] and "--dry-run" in dry
    assert main(dry[1:] + TINY) == 0
    assert "dry run: 2 steps; the exported pipeline loads (FluxOMFA, 32x24 px)" in capsys.readouterr().out

    assert train[:4] == ["accelerate", "launch", "--config_file", "configs/accelerate/ddp_bf16.yaml"]
    omfa_args = train[train.index("omfa") + 1 :]
    assert main([*omfa_args, *TINY, "--steps", "2", "--batch-size", "1"]) == 0
    pipeline = Path("runs/viton-hd-1024/pipeline")
    assert (pipeline / "model_index.json").is_file() and (Path("runs/viton-hd-1024/latents")).is_dir()
    # the base is recorded as the README put it, relative to the checkout: the Space finds it there too
    assert '"base_model": "models/FLUX.1-dev"' in (pipeline / "transformer" / "config.json").read_text()

    (script,) = re.findall(r"python - <<'PY'\n(.*?)\n\s*PY\n", text, flags=re.S)
    lines = script.splitlines()
    indent = len(lines[0]) - len(lines[0].lstrip())
    exec(compile("\n".join(line[indent:] for line in lines), "README", "exec"), {})
    results = sorted(p.name for p in Path("results/viton-hd-1024").iterdir())
    assert results == ["00891_00.png", "01430_00.png"]  # one try-off per test photo, named as its truth

    assert score[:2] == ["omfa", "score"] and score[-2:] == ["--device", "cuda"]
    capsys.readouterr()
    assert main([*score[1:-2], "--device", "cpu", "--json"]) == 0
    assert '"SSIM"' in capsys.readouterr().out
