"""The shared trainer (HF Accelerate): checkpoints + resume, EMA, NaN guard, progress bar, JSONL metrics."""
