"""Benchmarks of gendd_hf: the Fashion-MNIST benchmark, fast sampling (`fast_sampling`) and the diffusion head's
training speed (`head_speed`). Each module runs with `python -m gendd_hf.bench.<name>`."""
