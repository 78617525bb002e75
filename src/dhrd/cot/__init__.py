"""Chains of thought: the CoT baseline (prompts, engines, answer parsing, scoring), its set-up, and ``dhrd explain``."""
