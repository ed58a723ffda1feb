"""Whole analyses behind the notebooks' stored results: the method x metric grid, the
modality folds and study, record 232, the counterfactual study, evidence checks. Maintainers
read these when a stored result must be recomputed; they may import every layer below.
"""
