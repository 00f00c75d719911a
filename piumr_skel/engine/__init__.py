"""A run from its config: data, model, objective, checkpoints, training, evaluation, scores."""
