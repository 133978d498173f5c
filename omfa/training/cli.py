"""`omfa train / eval / ablate / score`: training, evaluation, the ablations and real-data scores.

Each command's arguments are parsed here; the work is done by
`omfa.training.loop.train`, `omfa.training.evaluate.evaluate_models`,
`omfa.training.ablations.ablate` and `omfa.training.real_metrics.score_folders`.
Torch and the models load only once a command runs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def _parser(command: str, module_doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"omfa {command}", description=module_doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def train_parser() -> argparse.ArgumentParser:
    from omfa import cli
    from omfa.pose.condition import POSE_CONDITIONS
    from omfa.training import loop
    from omfa.training.loss import LOSS_WEIGHTINGS, TIMESTEP_SAMPLINGS
    from omfa.training.models import BACKBONES

    parser = _parser("train", loop.__doc__)
    parser.add_argument(
        "--data", type=Path, required=True, help="dataset folder: written by `omfa synth`, or a real dataset's root"
    )
    parser.add_argument(
        "--out", type=Path, help="run folder (resumes if it has a checkpoint); not needed with --dry-run"
    )
    parser.add_argument("--config", default="small-cpu", choices=list(loop.CONFIGS))
    parser.add_argument(
        "--dataset",
        choices=loop.DATASETS,
        help="what --data holds (default: the config's): an `omfa synth` folder or a real dataset in its own layout",
    )
    parser.add_argument(
        "--size", type=cli.parse_size, help="real datasets: fit images to HEIGHTxWIDTH px (default: the config's)"
    )
    parser.add_argument(
        "--estimate-pose",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="real datasets: pose maps of the photos from the pose estimator (multi-view needs them; "
        "default: the config's, none: blank maps)",
    )
    parser.add_argument("--backbone", choices=BACKBONES, help="from-scratch 'omfa' or pretrained 'flux'")
    parser.add_argument(
        "--pretrained", type=Path, help="backbone flux: a local FLUX.1 folder (the pipeline folder or its transformer/)"
    )
    parser.add_argument("--lora-rank", type=int, help="backbone flux: LoRA rank (default: the config's; 0: full)")
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="backbone flux: recompute each block in backward (default: the config's)",
    )
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), help="default: the config's")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build everything from the config, train two steps into a temporary folder, report; keep nothing",
    )
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warmup", type=int, help="learning-rate warm-up steps (a warm start needs fewer)")
    parser.add_argument("--tasks", help="comma-separated task subset (ablations)")
    parser.add_argument("--full-canvas", action="store_true", help="ablation: noise every slot")
    parser.add_argument(
        "--full-condition-attention", action="store_true", help="ablation: conditions attend across slots"
    )
    parser.add_argument("--no-refiner", action="store_true", help="train the preset with the plain patch head")
    parser.add_argument(
        "--pose-condition",
        choices=list(POSE_CONDITIONS),
        help="pose map joined to the person slot: part colours or dense surface coordinates "
        "(default: the config's, parts)",
    )
    parser.add_argument(
        "--loss-weighting",
        choices=LOSS_WEIGHTINGS,
        help="per-timestep weight of the x0 loss (default: the config's, uniform)",
    )
    parser.add_argument(
        "--vae",
        metavar="DIR",
        help="a local diffusers VAE folder (AutoencoderKL, AutoencoderTiny or AutoencoderDC): train on its latents, "
        "cached once under OUT/latents",
    )
    parser.add_argument(
        "--preview-vae",
        metavar="DIR",
        help="a local tiny autoencoder of the VAE's latent space, exported to decode previews",
    )
    parser.add_argument(
        "--patch-size", type=int, metavar="P", help="override the preset's patch size (2 suits an 8x VAE)"
    )
    parser.add_argument(
        "--timestep-sampling",
        choices=TIMESTEP_SAMPLINGS,
        help="which timesteps batches draw; high_noise spends the steps where conditions must be read "
        "(default: the config's, uniform)",
    )
    parser.add_argument(
        "--task-weights",
        help="relative task frequencies over the config's, e.g. try_off_upper=2,try_off_lower=2",
    )
    parser.add_argument("--max-minutes", type=float, help="stop (after saving) when this much time has passed")
    parser.add_argument("--init-weights", type=Path, help="start from these model weights (safetensors)")
    parser.add_argument("--in-memory", action="store_true", help="decode the whole split into memory first")
    return parser


def eval_parser() -> argparse.ArgumentParser:
    from omfa.training import evaluate

    parser = _parser("eval", evaluate.__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="checkpoint folder; repeat to compare models (NAME=DIR names a model)",
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tasks", default="try_on,try_off,multiview")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate N samples")
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="take every k-th sample (8 on the test split: one view of each multi-view group)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet of results (first model)")
    parser.add_argument("--sheet-rows", type=int, default=8)
    parser.add_argument(
        "--train-data",
        type=Path,
        default=None,
        help="dataset whose train split the mean-garment baseline averages (default: --data)",
    )
    parser.add_argument(
        "--denoise-at",
        metavar="T,T,...",
        help="instead of sampling, score each model's one-step x0 from the truth noised to each time t in [0, 1]",
    )
    return parser


def ablate_parser() -> argparse.ArgumentParser:
    from omfa.training import ablations

    parser = _parser("ablate", ablations.__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder of per-variant run folders")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per variant")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variants", default=",".join(ablations.VARIANTS))
    parser.add_argument("--max-minutes", type=float, help="per variant: stop (after saving) and resume later")
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--limit", type=int, default=25, help="test samples (every 8th: one per view group)")
    parser.add_argument("--eval-only", action="store_true", help="skip training, score the saved models")
    parser.add_argument("--in-memory", action="store_true", help="decode the train split once for all variants")
    parser.add_argument("--json", action="store_true")
    return parser


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _task_weights(parser: argparse.ArgumentParser, text: str) -> dict[str, float]:
    """ "task=weight,..." -> {task: weight}; a malformed entry is a usage error that shows the form."""
    weights = {}
    for part in _split(text):
        task, _, value = part.partition("=")
        try:
            weights[task] = float(value)
        except ValueError:
            parser.error(f"--task-weights entry {part!r} is not task=number (e.g. try_off_upper=2)")
        if not weights[task] >= 0:
            parser.error(f"--task-weights: the weight of {task} must be >= 0, got {value}")
    return weights


def training_data(cfg, root: Path, in_memory: bool = False):
    """The training samples `cfg.dataset` names under `root`: an `omfa synth` train split or a real dataset."""
    from omfa.data.real import estimator_pose_fn, training_split
    from omfa.data.shards import ShardDataset

    if cfg.dataset == "synth":
        if cfg.estimate_pose:
            raise ValueError("--estimate-pose is for real photographs; synthetic samples carry their exact pose maps")
        dataset = ShardDataset(root, "train")
        if cfg.size_hw is not None and tuple(cfg.size_hw) != dataset.size_hw:
            raise ValueError(
                f"{root} holds {dataset.size_hw[0]}x{dataset.size_hw[1]} px samples, not "
                f"{cfg.size_hw[0]}x{cfg.size_hw[1]}; a synthetic dataset's size is set by `omfa synth --size`"
            )
    else:
        if cfg.size_hw is None:
            raise ValueError(f"dataset {cfg.dataset!r} needs a canvas size: pass --size HEIGHTxWIDTH")
        pose_fn = estimator_pose_fn(tuple(cfg.size_hw), blank_without_person=True) if cfg.estimate_pose else None
        dataset = training_split(cfg.dataset, root, tuple(cfg.size_hw), pose_fn)
    if in_memory:  # ~0.3 MB per sample at 128x96: decode once instead of every epoch
        dataset = [dataset[i] for i in range(len(dataset))]
    return dataset


def run_train(argv: list[str]) -> int:
    from omfa.data.real import RealDatasetError
    from omfa.training.loop import CONFIGS, SetupError, dry_run, train

    parser = train_parser()
    args = parser.parse_args(argv)
    if args.out is None and not args.dry_run:
        parser.error("--out is required (the run folder), except with --dry-run")
    overrides = {
        k: v
        for k, v in {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "pose_condition": args.pose_condition,
            "loss_weighting": args.loss_weighting,
            "timestep_sampling": args.timestep_sampling,
            "dataset": args.dataset,
            "size_hw": args.size,
            "estimate_pose": args.estimate_pose,
            "backbone": args.backbone,
            "pretrained": None if args.pretrained is None else str(args.pretrained),
            "lora_rank": args.lora_rank,
            "gradient_checkpointing": args.gradient_checkpointing,
            "mixed_precision": args.mixed_precision,
            "vae": args.vae,
            "preview_vae": args.preview_vae,
            "patch_size": args.patch_size,
        }.items()
        if v is not None
    }
    if args.tasks:
        overrides["tasks"] = _split(args.tasks)
    if args.task_weights:
        overrides["task_weights"] = CONFIGS[args.config].task_weights | _task_weights(parser, args.task_weights)
    if args.full_canvas:
        overrides["full_canvas"] = True
    if args.full_condition_attention:
        overrides["local_condition_attention"] = False
    if args.no_refiner:
        overrides["refiner"] = False
    try:
        cfg = replace(CONFIGS[args.config], **overrides)  # TrainConfig checks every field
        dataset = training_data(cfg, args.data, args.in_memory)
    except (ValueError, OSError, RealDatasetError) as error:  # OSError: e.g. no such --data folder
        parser.error(" ".join(str(error).split()))
    if cfg.backbone == "flux" and cfg.pretrained is None:
        parser.error("backbone flux needs --pretrained DIR: a local FLUX.1 folder (the pipeline or its transformer/)")
    try:
        if args.dry_run:
            dry_run(cfg, dataset)
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        train(cfg, dataset, args.out, max_minutes=args.max_minutes, init_weights=args.init_weights)
    except SetupError as error:  # the model or data the flags name cannot be built: a usage error too
        parser.error(str(error))
    return 0


def _noise_levels(parser: argparse.ArgumentParser, text: str) -> tuple[float, ...]:
    """ "0.05,0.3,1" -> (0.05, 0.3, 1.0); anything else is a usage error that says what is allowed."""
    try:
        levels = tuple(float(part) for part in _split(text))
    except ValueError:
        parser.error(f"--denoise-at takes comma-separated times in [0, 1], e.g. 0.05,0.3,0.9; got {text!r}")
    if not all(0.0 <= t <= 1.0 for t in levels):
        parser.error(f"--denoise-at times must lie in [0, 1]; got {text!r}")
    return levels


def run_eval(argv: list[str]) -> int:
    from omfa.data.examples import FAMILIES
    from omfa.training.evaluate import evaluate_models, format_table

    parser = eval_parser()
    args = parser.parse_args(argv)
    families = _split(args.tasks)
    for family in families:
        if family not in FAMILIES:
            parser.error(f"unknown task family {family!r}; choose from {', '.join(FAMILIES)}")
    denoise_at = _noise_levels(parser, args.denoise_at) if args.denoise_at else ()
    result = evaluate_models(
        [str(m) for m in args.model],
        args.data,
        split=args.split,
        families=families,
        steps=args.steps,
        guidance=args.guidance,
        limit=args.limit,
        every=args.every,
        seed=args.seed,
        with_baselines=not args.no_baselines,
        sheet=args.sheet,
        sheet_rows=args.sheet_rows,
        train_data=args.train_data,
        denoise_at=denoise_at,
    )
    print(json.dumps(result) if args.json else format_table(result["table"]))
    return 0


def run_ablate(argv: list[str]) -> int:
    from omfa.training.ablations import ablate
    from omfa.training.evaluate import format_table

    parser = ablate_parser()
    args = parser.parse_args(argv)
    try:
        result = ablate(
            args.data,
            args.out,
            preset=args.preset,
            steps=args.steps,
            batch_size=args.batch_size,
            variants=_split(args.variants),
            max_minutes=args.max_minutes,
            eval_steps=args.eval_steps,
            limit=args.limit,
            eval_only=args.eval_only,
            in_memory=args.in_memory,
        )
    except FileNotFoundError as error:  # --eval-only before a variant was trained
        parser.error(str(error))
    print(json.dumps(result) if args.json else format_table(result["table"]))
    return 0


def score_parser() -> argparse.ArgumentParser:
    from omfa import cli
    from omfa.training import real_metrics

    parser = _parser("score", real_metrics.__doc__)
    parser.add_argument("--generated", type=Path, required=True, help="folder of the model's results")
    parser.add_argument("--real", type=Path, required=True, help="folder of real test images")
    parser.add_argument(
        "--paired", action="store_true", help="results and truths match by file name, suffix aside: adds SSIM and LPIPS"
    )
    parser.add_argument("--size", type=cli.parse_size, help="score at HEIGHTxWIDTH (default: the real images' size)")
    parser.add_argument("--hub-dir", type=Path, help="a folder whose checkpoints/ holds the extractors' weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def run_score(argv: list[str]) -> int:
    import sys

    from omfa.training.real_metrics import score_folders

    parser = score_parser()
    args = parser.parse_args(argv)
    try:
        metrics, skipped = score_folders(
            args.generated, args.real, args.paired, args.size, args.hub_dir, device=args.device
        )
    except ValueError as error:
        parser.error(str(error))
    for reason in dict.fromkeys(skipped.values()):  # FID and KID share one reason
        print(reason, file=sys.stderr)
    print(json.dumps(metrics) if args.json else "\n".join(f"{k:<8} {v:.4f}" for k, v in metrics.items()))
    return 0


COMMANDS = {"train": run_train, "eval": run_eval, "ablate": run_ablate, "score": run_score}


def main(argv: list[str]) -> int:
    """`argv[0]` names the command (train, eval, ablate or score); the rest are its arguments."""
    return int(COMMANDS[argv[0]](argv[1:]) or 0)
