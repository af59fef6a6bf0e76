"""Command-line entry points: cpr-train, cpr-eval, cpr-predict, cpr-demo (argparse only)."""
