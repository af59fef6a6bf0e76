"""cpr-predict: score images with a trained model and write heat-map overlays."""
from __future__ import annotations

import argparse
import csv
import glob
import math
import os
import sys
from pathlib import Path

from ..errors import CPRError, InputError, one_line
from ..outputs import check_tool_folder, shown_name
from .common import add_debug_arg, cli_main, positive_int, setup_logging, torch_device

#: columns of predictions.csv, in order
CSV_FIELDS = ("path", "score", "threshold", "verdict", "overlay", "error")

#: file that marks an --out folder as written by cpr-predict (a later run may replace its outputs)
MARKER = ".cpr-predict"

# errors that belong to one image (unreadable, corrupt, refused by the model): its row gets them, the run goes on
FILE_ERRORS = (CPRError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpr-predict",
        description="Score images with a model.pt from cpr-train, or with an artifact folder from cpr-export "
                    "(runs without torch: ONNX Runtime and the native kernels). Prints 'path,score,threshold,verdict' "
                    "lines (a path holding a comma, a quote or a control character printed as Python's repr of it, "
                    "quoted and escaped) and writes OUT/predictions.csv (columns path, score, threshold, verdict, "
                    "overlay, error; replaced as a whole at the end of the run) and one heat map per image, "
                    "OUT/<relative path>_overlay.png: <relative path> is the image's path below the inputs' common "
                    "folder, its sub-folders kept as sub-folders of OUT and its extension kept, e.g. "
                    "OUT/sub/part1.png_overlay.png and OUT/sub/part1.jpg_overlay.png (blue = typical good surface, "
                    "green = the highest pixel seen on good training images, red = far above). A file that cannot "
                    "be read or scored does not stop the run: it gets no verdict, its row an error message, and the "
                    "exit status is 2 (0 when every image was scored).")
    p.add_argument("inputs", nargs="+", help="image files, folders, or glob patterns (quote them)")
    p.add_argument("--model", default="runs/model.pt",
                   help="model file written by cpr-train, or an artifact folder written by cpr-export")
    p.add_argument("--out", default="predictions",
                   help=f"output folder for overlays and CSV (default ./predictions): new, empty, or one an earlier "
                        f"cpr-predict run wrote (it holds the marker file {MARKER}; its outputs are replaced); any "
                        f"other non-empty folder, or one holding a symbolic link, is refused before any work")
    p.add_argument("--device", type=torch_device, default=None,
                   help="torch device for a model.pt (default: cuda when available; an artifact picks its ONNX "
                        "Runtime providers itself)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--no-overlays", action="store_true", help="only scores, no overlay images")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write an HTML report into DIR: score histogram with the threshold, the most and least "
                        "anomalous images with heat maps, all scores. DIR must be new, empty or an earlier report "
                        "(recognized by the marker in its index.html); a folder with other files, an index.html "
                        "that no report wrote or a symbolic link is refused before any work")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first file that cannot be read or scored (exit status 2, no predictions.csv "
                        "written; an earlier one is left as it is)")
    p.add_argument("--quiet", action="store_true", help="less logging")
    add_debug_arg(p)
    return p


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images) and glob patterns -> image paths in the order given, each file once
    (the same file reached twice, e.g. by a folder and a pattern, is kept at its first mention); error if none."""
    from ..data.samples import list_image_files

    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += list_image_files(p)
        elif p.is_file():
            paths.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise SystemExit(f"error: no such file, folder or matching pattern: {item}")
            paths += matches
    first: dict[Path, Path] = {}
    for p in paths:
        first.setdefault(p.resolve(), p)
    unique = list(first.values())
    if not unique:
        raise SystemExit(f"error: no image files in {inputs}")
    return unique


def overlay_names(paths: list[Path]) -> dict[Path, Path]:
    """Overlay file of each image, relative to OUT: its path below the images' common folder with
    ``_overlay.png`` appended to the full file name (``sub/part1.jpg`` -> ``sub/part1.jpg_overlay.png``).

    Distinct images always get distinct names: the folders stay folders and the extension stays.
    """
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    names = {}
    for p in paths:
        relative = p.resolve().relative_to(root)
        names[p] = relative.with_name(relative.name + "_overlay.png")
    return names


def write_predictions_csv(out_dir: Path, rows: list[dict]) -> Path:
    """Write ``out_dir/predictions.csv`` (columns ``CSV_FIELDS``; ``None`` -> empty cell) atomically:
    a temporary file in ``out_dir`` replaces it only once complete. Returns its path."""
    target = out_dir / "predictions.csv"
    tmp = out_dir / f".predictions.csv.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _file_error(path: Path, error: BaseException) -> str:
    """One-line message for a file that failed, naming the file."""
    message, shown = one_line(error), shown_name(str(path))
    return message if str(path) in message or shown in message else f"{shown}: {message}"


def _score_chunk(det, paths: list[Path], batch_size: int) -> list[tuple]:
    """Read and score ``paths`` in one batch -> ``(path, image, prediction, error)`` per path, in order.

    ``image``: (H, W, 3) uint8 RGB; ``error``: None, or the exception (``FILE_ERRORS``) that file
    raised (read, predict, or a non-finite score) - then ``prediction`` is None. When the batch's
    predict fails, its images are scored one by one to find the file at fault.
    """
    from ..data import read_image

    images, errors = {}, {}
    for path in paths:
        try:
            images[path] = read_image(path)
        except FILE_ERRORS as error:
            errors[path] = error
    readable = [p for p in paths if p in images]
    preds = {}
    if readable:
        try:
            preds = dict(zip(readable, det.predict([images[p] for p in readable], batch_size=batch_size)))
        except FILE_ERRORS:
            for path in readable:
                try:
                    preds[path] = det.predict(images[path])
                except FILE_ERRORS as error:
                    errors[path] = error
    for path, pred in preds.items():
        if not math.isfinite(pred.score):
            errors[path] = InputError(f"non-finite score {pred.score} from the model for image {str(path)!r}")
    return [(p, images.get(p), None if p in errors else preds[p], errors.get(p)) for p in paths]


def predict_paths(model: str, inputs: list[str], out: str, device: str | None = None, batch_size: int = 8,
                  overlays: bool = True, fail_fast: bool = False, report: str | None = None) -> list[dict]:
    """Score images, write overlays and predictions.csv; return one dict per image, in input order.

    Each dict has the keys ``CSV_FIELDS``: ``score`` (float), ``threshold`` (float), ``verdict``
    ("good" / "anomalous"), ``overlay`` (its path, or None), ``error`` (None, or the one-line message
    of a file that could not be read or scored - a non-finite score counts as such - whose score and
    verdict are then None). Scored files print ``path,score,threshold,verdict`` to stdout, failed ones
    ``cpr-predict: error: <message>`` to stderr, as the run goes (a path that could forge a line or field
    printed as its repr). ``out``: new, empty or written by an earlier run (:data:`MARKER`), with no
    symbolic link; checked first. With ``fail_fast`` the first failed file raises :class:`InputError`
    and no CSV is written. ``report``: a folder for the HTML report of the run
    (:mod:`cpr_engine.report`: score histogram, most / least anomalous images), checked first.
    """
    from .. import report as html_report
    from ..data import write_image
    from ..detector import Detector
    from ..overlay import heatmap_overlay

    out_dir = Path(out)
    check_tool_folder(out_dir, MARKER, "--out", "cpr-predict")
    if report:
        html_report.check_report_target(report)
    det = Detector.load(model, device=device)
    paths = expand_inputs(inputs)
    names = overlay_names(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by cpr-predict: a later cpr-predict --out here replaces its outputs\n")
    rows = []
    for i in range(0, len(paths), batch_size):
        for path, image, pred, error in _score_chunk(det, paths[i:i + batch_size], batch_size):
            if error is not None:
                message = _file_error(path, error)
                if fail_fast:
                    raise InputError(message) from error
                print(f"cpr-predict: error: {message}", file=sys.stderr, flush=True)
                rows.append({"path": str(path), "score": None, "threshold": det.threshold, "verdict": None,
                             "overlay": None, "error": message})
                continue
            row = {"path": str(path), "score": pred.score, "threshold": det.threshold,
                   "verdict": "anomalous" if pred.is_anomalous else "good", "overlay": None, "error": None}
            if overlays:
                target = out_dir / names[path]
                write_image(target, heatmap_overlay(image, pred.anomaly_map, det.pixel_normal))
                row["overlay"] = str(target)
            rows.append(row)
            print(f"{shown_name(str(path))},{pred.score:.4f},{det.threshold:.4f},{row['verdict']}", flush=True)
    write_predictions_csv(out_dir, rows)
    scored = [{"path": r["path"], "label": None, "defect_type": "-", "score": r["score"]} for r in rows if not r["error"]]
    if report and scored:
        page = html_report.CategoryReport(Path(model).parent.name or "predictions", None, det.threshold, scored)
        html_report.add_galleries(page, det, {}, Path(report) / "thumbs")
        print(f"cpr-predict: report {html_report.write_report(report, [page], 'cpr-engine predictions')}",
              file=sys.stderr, flush=True)
    return rows


@cli_main("cpr-predict")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    rows = predict_paths(args.model, args.inputs, args.out, args.device, args.batch_size,
                         overlays=not args.no_overlays, fail_fast=args.fail_fast, report=args.report)
    failed = sum(r["error"] is not None for r in rows)
    csv_path = Path(args.out) / "predictions.csv"
    if failed:
        print(f"cpr-predict: error: scored {len(rows) - failed} of {len(rows)} images, {failed} failed "
              f"(see the error column of {csv_path})", file=sys.stderr)
        return 2
    print(f"cpr-predict: scored {len(rows)} of {len(rows)} images -> {csv_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
