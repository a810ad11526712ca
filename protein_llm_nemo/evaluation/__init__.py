"""Evaluation: GO metrics through CAFA-evaluator (`cafaeval`) and the baselines a model is compared with."""
