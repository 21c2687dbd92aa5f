"""The two stage networks of the cascade and everything around them.

Preprocessing (one code path for training and serving), the synthetic data set, training,
calibration, export (ONNX, INT8, TensorRT) and inference engines. This package imports
nothing else of the project: ``cascade`` builds on it, never the other way round.
"""
