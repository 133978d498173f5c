"""Pretrained diffusers backbones under OMFA's partial diffusion (see docs/BACKBONES.md).

`flow`: the VP schedule on a rectified-flow backbone; `blocks`: one FLUX block
over OMFA's token groups, each at its own timestep; `flux`: the adapter with
the denoiser contract; `lora`: peft LoRA on the frozen base.
"""
