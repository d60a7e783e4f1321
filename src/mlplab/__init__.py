"""mlplab: reproducible deep-learning experiments on MLPs (Lightning + Hydra + wandb, MNIST)."""
