"""``cpr-eval --report DIR`` / ``cpr-predict --report DIR``: one self-contained HTML page per run.

Per category: the field's metrics, F1 and the confusion counts at the model's own threshold, the
model's settings, the ROC and PRO curves and the score histograms of good and defective images
with the threshold (matplotlib, PNG files beside the page), and galleries of the worst false positives, the
missed defects and a few correct ones (image with its ground-truth outline, heat map). No network:
every file is local; tables sort on a click; thumbnails load lazily. An unlabeled run
(``cpr-predict``, ``metrics`` None) shows the score histogram, the flagged count and galleries of
the most and least anomalous images instead.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .outputs import check_can_write, first_link
from .data import read_image, read_mask
from .errors import InputError, OutputError
from .evaluate import METRIC_COLUMNS
from .overlay import heatmap_overlay

GALLERY_SIZE = 6  # images per gallery
THUMB_SIDE = 224  # thumbnail width in pixels
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], col = th.cellIndex;
  const up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
  const key = row => { const v = row.cells[col].dataset.value ?? row.cells[col].textContent;
                       return isNaN(parseFloat(v)) ? v : parseFloat(v); };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1))
    .forEach(row => body.appendChild(row));
}));
"""


@dataclass
class CategoryReport:
    """What the page shows of one category (``evaluate_samples`` rows + the model's threshold)."""

    name: str
    metrics: dict | None  # None for an unlabeled run
    threshold: float
    images: list[dict]  # {"path", "label" (None when unlabeled), "defect_type", "score"}
    settings: dict = field(default_factory=dict)
    pro_curve: dict | None = None  # {"fpr", "pro"} of evaluate_samples
    galleries: dict = field(default_factory=dict)  # title -> [(thumbnail file, caption)]


def confusion(images: list[dict], threshold: float) -> dict[str, float]:
    """Counts and F1 of the verdicts ``score > threshold`` against the labels."""
    labels = np.array([r["label"] for r in images], bool)
    flagged = np.array([r["score"] > threshold for r in images], bool)
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    fn, tn = int((~flagged & labels).sum()), int((~flagged & ~labels).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"TP": tp, "FP": fp, "FN": fn, "TN": tn, "F1": f1}


def gallery_picks(images: list[dict], threshold: float, n: int = GALLERY_SIZE) -> dict[str, list[dict]]:
    """The worst false positives (highest-scored good images above the threshold), the missed
    defects (lowest-scored defective images at or below it) and the first ``n`` correct verdicts;
    unlabeled images: the ``n`` most and the ``n`` least anomalous."""
    if any(r["label"] is None for r in images):
        ranked = sorted(images, key=lambda r: -r["score"])
        return {"most anomalous": ranked[:n], "least anomalous": ranked[::-1][:n]}
    good = sorted((r for r in images if r["label"] == 0), key=lambda r: -r["score"])
    bad = sorted((r for r in images if r["label"] == 1), key=lambda r: r["score"])
    correct = [r for r in images if (r["score"] > threshold) == bool(r["label"])]
    return {"false positives": [r for r in good if r["score"] > threshold][:n],
            "missed defects": [r for r in bad if r["score"] <= threshold][:n],
            "correct": correct[:n]}


def _thumbnail(detector, row: dict, mask_path: str | None, out: Path) -> None:
    """Image with the ground-truth outline (white) beside its heat map, as one JPEG thumbnail."""
    image = read_image(row["path"])
    prediction = detector.predict(image)
    heat = heatmap_overlay(image, prediction.anomaly_map, detector.pixel_normal)
    outlined = image.copy()
    if mask_path:
        contours, _ = cv2.findContours(read_mask(mask_path, image.shape[:2]).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(outlined, contours, -1, (255, 255, 255), max(1, image.shape[1] // 150))
    pair = np.concatenate([outlined, heat], axis=1)
    scale = 2 * THUMB_SIDE / pair.shape[1]
    pair = cv2.resize(pair, (2 * THUMB_SIDE, max(1, round(pair.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out), pair[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])


def add_galleries(report: CategoryReport, detector, masks: dict[str, str | None], folder: Path) -> None:
    """Render the gallery thumbnails of ``report`` into ``folder`` (``masks``: image path -> mask path)."""
    folder.mkdir(parents=True, exist_ok=True)
    for title, rows in gallery_picks(report.images, report.threshold).items():
        items = []
        for i, row in enumerate(rows):
            name = f"{report.name}_{title.replace(' ', '_')}_{i}.jpg"
            _thumbnail(detector, row, masks.get(row["path"]), folder / name)
            items.append((f"{folder.name}/{name}", f"{Path(row['path']).name} ({row['defect_type']}): "
                                                  f"score {row['score']:.4g}"))
        report.galleries[title] = items


def _plots(report: CategoryReport, folder: Path) -> list[str]:
    """ROC curve, PRO curve and score histograms with the threshold, as PNG files; returns their relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    scores = np.array([r["score"] for r in report.images])
    bins = np.linspace(scores.min(), scores.max(), 30) if scores.max() > scores.min() else 10
    if report.metrics is None:  # unlabeled: the scores and the threshold only
        fig, hist = plt.subplots(1, 1, figsize=(5, 4))
        hist.hist(scores, bins=bins, color="C0", label="images")
        return _finish_plot(fig, hist, report, folder)
    labels = np.array([r["label"] for r in report.images], bool)
    order = np.argsort(-scores, kind="stable")
    tpr = np.concatenate([[0], np.cumsum(labels[order]) / max(1, labels.sum())])
    fpr = np.concatenate([[0], np.cumsum(~labels[order]) / max(1, (~labels).sum())])
    fig, (roc, pro, hist) = plt.subplots(1, 3, figsize=(15, 4))
    roc.plot(fpr, tpr, color="C0")
    roc.plot([0, 1], [0, 1], color="0.7", linestyle=":")
    roc.set(xlabel="false positive rate", ylabel="true positive rate",
            title=f"ROC (image AUROC {100 * report.metrics['image_AUROC']:.1f})")
    if report.pro_curve:
        pro.plot(report.pro_curve["fpr"], report.pro_curve["pro"], color="C1")
        pro.set(xlim=(0, 0.3), ylim=(0, 1.02), title=f"PRO to FPR 0.3 (AUPRO {100 * report.metrics['pixel_AUPRO']:.1f})")
    else:
        pro.set(title="PRO: no ground-truth masks")
    pro.set(xlabel="false positive rate (pixels)", ylabel="per-region overlap")
    hist.hist(scores[~labels], bins=bins, alpha=0.6, label="good", color="C2")
    hist.hist(scores[labels], bins=bins, alpha=0.6, label="defective", color="C3")
    return _finish_plot(fig, hist, report, folder)


def _finish_plot(fig, hist, report: CategoryReport, folder: Path) -> list[str]:
    """Threshold line and labels on the histogram, then the figure saved as PNG; returns its relative path."""
    import matplotlib.pyplot as plt

    hist.axvline(report.threshold, color="k", linestyle="--", label="threshold")
    hist.set(xlabel="image score", ylabel="images", title="scores")
    hist.legend()
    fig.tight_layout()
    path = folder / f"{report.name}_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [f"{folder.name}/{path.name}"]


def _table(header: list[str], rows: list[list], sortable: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td data-value="{html.escape("-" if v is None else str(v))}">{html.escape(_fmt(v))}</td>' for v in row)
                   + "</tr>" for row in rows)
    return f'<table class="{"sortable" if sortable else ""}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value) -> str:
    """A table cell: fractions as percent with one decimal, None (a metric without masks) as "-"."""
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if isinstance(value, float) and 0 <= value <= 1 else str(value)


REPORT_ENTRIES = {"index.html", "plots", "thumbs"}
#: the mark of a page written by :func:`write_report`, near the top of its index.html
GENERATOR = '<meta name="generator" content="cpr-engine report">'


def is_report_page(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) with :data:`GENERATOR` in its first KiB."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        return GENERATOR.encode() in f.read(1024)


def check_report_target(folder: str | Path) -> Path:
    """A report folder may be new, empty or an earlier report (only ``REPORT_ENTRIES``, an index.html
    that :func:`is_report_page` recognizes, no symbolic link, writable); else OutputError.
    InputError when matplotlib (the ``report`` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--report needs matplotlib: pip install 'cpr-engine[report]'") from None

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--report {folder} is an existing file, not a folder")
    stray = sorted(p.name for p in folder.iterdir() if p.name not in REPORT_ENTRIES) if folder.is_dir() else []
    if stray:
        raise OutputError(f"--report {folder} holds other files ({', '.join(stray[:3])}); give a new or empty folder")
    index = folder / "index.html"
    if os.path.lexists(index) and not is_report_page(index):
        raise OutputError(f"--report {folder}: its index.html is not one a cpr-engine report wrote (no generator "
                          f"marker); give a new or empty folder")
    link = first_link(folder) if folder.is_dir() else None
    if link:
        raise OutputError(f"--report {folder} holds a symbolic link that no report created: {link}; remove it or "
                          f"give another folder")
    check_can_write(folder, "--report")
    return folder


def write_report(folder: str | Path, reports: list[CategoryReport], title: str = "cpr-engine evaluation") -> Path:
    """Write ``folder/index.html`` (+ ``plots/``, and the ``thumbs/`` of :func:`add_galleries`); returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labeled = [r for r in reports if r.metrics is not None]
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>"]
    if labeled:
        summary = []
        for r in labeled:
            counts = confusion(r.images, r.threshold)
            summary.append([r.name, *(r.metrics.get(c) for c in METRIC_COLUMNS),
                            counts["F1"], counts["TP"], counts["FP"], counts["FN"], counts["TN"], len(r.images)])
        parts.append(_table(["category", *METRIC_COLUMNS, "F1 at threshold", "TP", "FP", "FN", "TN", "images"],
                            summary))
    unlabeled = [[r.name, sum(i["score"] > r.threshold for i in r.images), len(r.images)]
                 for r in reports if r.metrics is None]
    if unlabeled:
        parts.append(_table(["run", "flagged anomalous", "images"], unlabeled))
    for r in reports:
        parts.append(f'<h2 id="{html.escape(r.name)}">{html.escape(r.name)}</h2>')
        parts.append(f"<p>threshold {r.threshold:.6g}; settings: "
                     f"{html.escape(', '.join(f'{k} {v}' for k, v in r.settings.items()))}</p>")
        parts += [f'<img class="plot" src="{html.escape(p)}" alt="curves of {html.escape(r.name)}">'
                  for p in _plots(r, folder / "plots")]
        for gallery, items in r.galleries.items():
            cells = "".join(f'<figure><img loading="lazy" src="{html.escape(src)}" alt="{html.escape(cap)}">'
                            f"<figcaption>{html.escape(cap)}</figcaption></figure>" for src, cap in items)
            parts.append(f"<h3>{html.escape(gallery)} ({len(items)})</h3><div class=\"gallery\">{cells or 'none'}</div>")
        parts.append("<h3>All images</h3>")
        parts.append(_table(["image", "defect type", "label", "score", "verdict"],
                            [[Path(i["path"]).name, i["defect_type"], "-" if i["label"] is None else i["label"],
                              f"{i['score']:.6g}",
                              "anomalous" if i["score"] > r.threshold else "good"] for i in r.images]))
    page = ("<!doctype html><html><head><meta charset=\"utf-8\">" + GENERATOR + "<title>" + html.escape(title)
            + "</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}th{cursor:pointer;background:#eee}"
            ".gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:" + str(2 * THUMB_SIDE) + "px}"
            "figcaption{font-size:small}img.plot{max-width:100%}</style></head><body>" + "\n".join(parts)
            + "<script>" + SORT_SCRIPT + "</script></body></html>")
    index = folder / "index.html"
    index.write_text(page)
    return index
