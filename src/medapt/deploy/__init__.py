"""A model leaves the run directory: export (timm, TorchScript, ONNX) and predict on new images.

``export_model(run_dir, strategy, seed=..., task=..., head=..., fmt=..., out_file=...)`` finds the
weights a strategy produced in a run (re-planning the run's own ``config.yaml``), attaches the
head asked for (the model's own, or a downstream MLP head with its feature standardisation) and
writes one file + a JSON of what a user needs to apply it (architecture, cut point, input size,
normalisation, class names). ``predict(model_file, images)`` scores image files, folders and
DICOM with that preprocessing.
"""

from .export import EXPORT_FORMATS, ExportResult, export_model, locate_model
from .predict import predict, predictions_frame

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_model", "locate_model", "predict", "predictions_frame"]
