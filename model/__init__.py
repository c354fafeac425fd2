"""The model as trained and served: compiled inference, calibrated probabilities, exact explanations, evaluation."""

MODEL_NAME = "drybean_svc"  # in the BentoML model store; every version of it is served (rollout/registry.py)
