"""The model lifecycle: several models in one service (registry.py) with roles kept in the database (roles.py,
sync.py, control.py), second opinions in the background (shadow.py), the evidence and the canary's guard rails
(evidence.py, guard.py, compare.py), the operator API (routes.py), and the offline backtest (backtest.py)."""
