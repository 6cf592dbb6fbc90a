"""Evaluation reports: sections, figures, latent-space embeddings, baselines, scoring and HTML."""

__all__: list[str] = []
