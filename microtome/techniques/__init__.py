"""Techniques: feature visualization, DeepDream, dataset examples, tuning curves, connections.

Each turns a model and a layer's units into `ArtifactResult`s (see base.py)."""
