"""The DeepFinder engine: numpy, scipy, scikit-learn and TensorFlow only.

Nothing in this package imports Scipion; it is usable and testable on its own.
Arrays are indexed (z, y, x); particle tables hold x, y, z in voxels.
"""
