"""The shared trainer (HF Accelerate): ``trainer`` (checkpoints + resume, NaN guard, progress bar, JSONL metrics),
``checkpoint`` (pickle-free checkpoints), ``ema`` (exponential moving average of the weights)."""
