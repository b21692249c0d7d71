"""The shared trainer (HF Accelerate): ``trainer`` (checkpoints + resume, NaN guard, progress bar, JSONL metrics),
``checkpoint`` (pickle-free checkpoints), ``ema`` (exponential moving average of the weights), ``diffusion_recipe``
(the one recipe every diffusion model is trained by: captions with the empty prompt, caption dropout, a configured
loss, the EMA weights exported)."""
