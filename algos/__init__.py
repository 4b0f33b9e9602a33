"""Algorithms: the seed's formulas (``core``), the rollout layout, and one file per algorithm.

Kept import-light: ``import rftgym.algos`` loads no torch; import the submodules you need.
"""
