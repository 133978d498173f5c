"""Training and evaluating the one model for all tasks.

- `batch`: `Batch`, one task's samples stacked into targets, conditions and the pose map (`collate`);
- `loss`: the partial-diffusion loss (targets noised, conditions clean) and its timestep weightings;
- `latents`: `LatentDataset`, a training set's images encoded once by a VAE and cached on disk;
- `loop`: `TrainConfig`, its presets and the resumable training loop (`train`);
- `metrics`, `evaluate`: image metrics, baselines and the evaluation of pipelines (`evaluate_models`);
- `ablations`: the design choices retrained and scored at equal compute (`ablate`);
- `cli`: the `omfa train`, `omfa eval` and `omfa ablate` commands.

Which sample keys fill which slots is `omfa.data.examples`; the schedule and sampler, `omfa.diffusion`.
"""
