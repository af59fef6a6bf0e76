"""Speed measurement of the inference pipeline (``cpr-bench``)."""
