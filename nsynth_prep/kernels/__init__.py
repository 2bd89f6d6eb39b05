"""Numerical kernels: pure numba functions over arrays, each beside its plain-numpy reference. Imports nothing of nsynth's."""
