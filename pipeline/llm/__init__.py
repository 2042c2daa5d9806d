"""LLM training data from the measured pose series, synthetic data from teacher
models (OpenAI, Claude), and fine-tuning (OpenAI jobs or local LoRA)."""
