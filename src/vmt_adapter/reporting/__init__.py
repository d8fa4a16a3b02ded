"""What is made from trained runs: tables (``report``), figures, predictions on images (``predict``) and
ONNX export (``export``)."""
