"""cpr-eval --report: one self-contained HTML page (no network), its plots and galleries on disk."""
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cpr_engine.cli.eval import main as eval_main
from cpr_engine.report import confusion, gallery_picks
from tests.helpers.cli import cli_error

pytest.importorskip("matplotlib")


class _Page(HTMLParser):
    """Collects the page's image sources, script sources, links, and table headers."""

    def __init__(self):
        super().__init__()
        self.images, self.external, self.headers, self._in_th = [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        self._in_th = tag == "th"

    def handle_data(self, data):
        if self._in_th:
            self.headers.append(data)
            self._in_th = False


ROWS = [{"path": f"/x/{i}.png", "label": label, "defect_type": "good" if not label else "hole", "score": score}
        for i, (label, score) in enumerate([(0, 1.0), (0, 5.0), (0, 2.0), (1, 6.0), (1, 1.5), (1, 9.0)])]


def test_confusion_and_gallery_picks():
    assert confusion(ROWS, 3.0) == {"TP": 2, "FP": 1, "FN": 1, "TN": 2, "F1": pytest.approx(4 / 6)}
    picks = gallery_picks(ROWS, 3.0, n=2)
    assert [r["score"] for r in picks["false positives"]] == [5.0]
    assert [r["score"] for r in picks["missed defects"]] == [1.5]
    assert all((r["score"] > 3.0) == bool(r["label"]) for r in picks["correct"]) and len(picks["correct"]) == 2


def test_eval_writes_a_self_contained_report(tiny_detector, demo_root, tmp_path, capsys):
    runs, report = tmp_path / "runs", tmp_path / "report"
    tiny_detector.save(runs / "coffee" / "model.pt")
    assert eval_main(["--data", str(demo_root), "--category", "coffee", "--models", str(runs), "--report",
                      str(report), "--quiet", "--device", "cpu"]) == 0
    assert f"report: {report / 'index.html'}" in capsys.readouterr().out
    page = _Page()
    page.feed((report / "index.html").read_text())
    assert not page.external, page.external
    assert page.images and all((report / src).is_file() for src in page.images)
    assert any(src.startswith("plots/") for src in page.images) and any(src.startswith("thumbs/") for src in page.images)
    assert {"category", "image_AUROC", "F1 at threshold", "FP", "FN"} <= set(page.headers)
    # an earlier report is replaced; a folder of the user's is refused before any work
    assert eval_main(["--data", str(demo_root), "--category", "coffee", "--models", str(runs), "--report",
                      str(report), "--quiet", "--device", "cpu"]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    error = cli_error(eval_main, ["--data", str(demo_root), "--category", "coffee", "--models", str(runs),
                                  "--report", str(mine), "--quiet", "--device", "cpu"], capsys)
    assert "holds other files (notes.txt)" in error and (mine / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]



def test_predict_writes_a_report_of_an_unlabeled_run(tiny_detector, demo_root, tmp_path, capsys):
    from cpr_engine.cli.predict import main as predict_main

    model = tiny_detector.save(tmp_path / "run" / "model.pt")
    report = tmp_path / "report"
    folders = [str(f) for f in sorted((Path(demo_root) / "coffee" / "test").iterdir())]
    assert predict_main([*folders, "--model", str(model), "--out",
                         str(tmp_path / "out"), "--no-overlays", "--report", str(report), "--quiet"]) == 0
    page = _Page()
    page.feed((report / "index.html").read_text())
    assert not page.external and page.images and all((report / src).is_file() for src in page.images)
    assert {"run", "flagged anomalous", "images"} <= set(page.headers)
    assert "most anomalous" in (report / "index.html").read_text()
    picks = gallery_picks([{**r, "label": None} for r in ROWS], 3.0, n=2)
    assert [r["score"] for r in picks["most anomalous"]] == [9.0, 6.0]
    assert [r["score"] for r in picks["least anomalous"]] == [1.0, 1.5]
