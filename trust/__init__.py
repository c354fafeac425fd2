"""Which answers to doubt: consistency.py (features that contradict each other), ood.py (beans unlike the training
data), conformal.py (prediction sets), assessment.py (all three for one request's beans)."""
