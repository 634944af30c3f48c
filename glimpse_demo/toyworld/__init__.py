"""The toy world and the small Qwen2.5-VL trained on it (shipped in assets/toy/, the app's default).

world: seeded scenes and questions; model: tokenizer and model size; data: samples -> model inputs;
train_base / train_glimpse: the two training stages; evaluate / report: the held-out table.
"""
