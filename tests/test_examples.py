import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["model.pt", "artifact"])
def test_watch_folder_example_scores_and_survives_a_corrupt_file(kind, tiny_detector, demo_root, tmp_path):
    if kind == "artifact":
        pytest.importorskip("onnxruntime")
        from cpr_engine.exporter import export_artifact
        model = export_artifact(tiny_detector, tmp_path / "artifact", trt="no")["artifact"]
    else:
        model = tiny_detector.save(tmp_path / "model.pt")
    watch = tmp_path / "incoming"
    watch.mkdir()
    for name in ("000.png", "001.png"):
        shutil.copy(f"{demo_root}/grass/test/good/{name}", watch / name)
    shutil.copy(f"{demo_root}/grass/test/stain/000.png", watch / "stain.png")
    (watch / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "verdicts"
    run = subprocess.run([sys.executable, str(ROOT / "examples/python/watch_folder.py"), "--model", str(model),
                          "--watch", str(watch), "--out", str(out), "--once"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("half.png skipped: cannot read image") for line in lines)
    scored = [line.split() for line in lines if line.split()[0] in {"000.png", "001.png", "stain.png"}]
    assert len(scored) == 3 and {s[2] for s in scored} <= {"good", "ANOMALOUS"}
    assert "throughput:" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["000_overlay.png", "001_overlay.png", "stain_overlay.png"]
