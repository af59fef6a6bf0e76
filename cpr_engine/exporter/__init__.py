"""Export a trained model to a deployable artifact: ONNX graph, bank arrays, manifest, TensorRT plan."""
from .artifact import export_artifact

__all__ = ["export_artifact"]
