"""The model lifecycle: comparing a challenger with the champion (compare.py) and backtesting it (backtest.py)."""
