"""The model as trained and served: compiled inference, calibrated probabilities, exact explanations, evaluation."""
