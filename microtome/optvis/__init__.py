"""microtome.optvis"""
