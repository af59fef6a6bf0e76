"""Deployment-side code that never imports torch: the artifact format (and, next, the runtime)."""
