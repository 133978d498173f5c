"""Training data: the synthetic fitting room and loaders for real try-on datasets.

- `garments`, `people`: what garments and identities are (specs, sampling, fabrics);
- `cutting`, `cylinders`, `tailor`: garment geometry and texture mapping on the rest-pose
  body (`omfa.pose.lowpoly`), and dressing it in any pose;
- `synthetic`: planning samples and splits from a seed; `fitting_room`: rendering them;
- `shards`, `generate`: tar-shard storage (`ShardDataset`, the sample format) and resumable
  parallel generation;
- `real`: VITON-HD, DressCode and DeepFashion-MultiModal in the same sample format;
- `examples`: a sample -> a training example or evaluation cases, and the label ids;
- `sheet`: contact sheets; `cli`: the `omfa synth` command.

Submodules load OpenGL or the body model only when imported; import the one you need.
"""
