"""Content safety: prompts checked before the model runs, completions before a byte is sent."""
