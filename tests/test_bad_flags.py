"""Impossible flags of every command: refused by the parser before any work, one line naming the
flag (exit status 2, no traceback), and nothing written anywhere."""
import importlib.util

import pytest
import torch

from cpr_engine.cli import bench, demo, eval as eval_cli, export, predict, serve, train
from tests.helpers.cli import cli_error

CASES = [  # (command, flag, value)
    *[(train, "--steps", v) for v in ("0", "-1", "x", "1.5")],
    *[(train, "--train-batch", v) for v in ("0", "-3")],
    *[(train, "--top-k", v) for v in ("0", "x")],
    *[(train, "--image-size", v) for v in ("30", "65", "0", "-16", "100")],
    *[(train, "--time-budget", v) for v in ("0", "-1", "nan", "inf", "x")],
    *[(train, "--batch-size", v) for v in ("0", "-1")],
    *[(train, "--n-anomaly", v) for v in ("-1", "x")],
    *[(train, "--p-paste", v) for v in ("1.5", "-0.1", "nan")],
    (train, "--p-real-defect", "2"), (train, "--descriptor", "bogus"), (train, "--variant", "bogus"),
    (train, "--texture", "maybe"), (train, "--seed", "-1"), (train, "--split-seed", "x"),
    *[(eval_cli, "--batch-size", v) for v in ("0", "-1", "x")],
    (eval_cli, "--n-anomaly", "-2"), (eval_cli, "--baseline", "bogus"), (eval_cli, "--dataset", "bogus"),
    *[(predict, "--batch-size", v) for v in ("0", "-1", "x")],
    (export, "--trt", "bogus"),
    (bench, "--batch", "0"), (bench, "--runs", "0"), (bench, "--warmup", "-1"), (bench, "--backend", "bogus"),
    (bench, "--variant", "bogus"),
    *[(serve, "--http-port", v) for v in ("0", "70000", "x")], (serve, "--grpc-port", "-1"),
    (serve, "--metrics-port", "65536"), (serve, "--instances", "0"), (serve, "--max-batch-size", "0"),
    (serve, "--map-downscale", "0"), (serve, "--max-queue-delay-us", "-5"), (serve, "--exit-timeout", "-1"),
    (demo, "--steps", "0"), (demo, "--train-batch", "0"), (demo, "--variant", "bogus"), (demo, "--seed", "-3"),
    *[(command, "--device", v) for command in (train, eval_cli, demo, predict, bench)
      for v in ("bogus", "meta", "", "cuda:99")],
    *[(command, "--device", "cuda") for command in (train, eval_cli, demo, predict, bench)
      if not torch.cuda.is_available()],
    (bench, "--batch", "100000"),
]

# the other arguments each command needs, pointing into the test's own folder
REQUIRED = {
    train: lambda d: ["--data", str(d / "data"), "--out", str(d / "out")],
    eval_cli: lambda d: ["--data", str(d / "data"), "--models", str(d / "models")],
    predict: lambda d: ["--model", str(d / "model.pt"), "--out", str(d / "out"), str(d / "x.png")],
    export: lambda d: [str(d / "model.pt"), "-o", str(d / "out")],
    bench: lambda d: ["--json", str(d / "bench.json")],
    serve: lambda d: [str(d / "artifact")],
    demo: lambda d: ["--out", str(d / "out")],
}


@pytest.mark.parametrize("command,flag,value", CASES,
                         ids=[f"{c.__name__.split('.')[-1]}{f}={v}" for c, f, v in CASES])
def test_impossible_flag_is_refused_before_any_work(command, flag, value, tmp_path, capsys):
    line = cli_error(command.main, [*REQUIRED[command](tmp_path), flag, value], capsys)
    assert flag in line
    assert not list(tmp_path.iterdir())  # nothing was written


def test_export_refuses_a_folder_and_an_impossible_trt_before_any_work(tmp_path, capsys):
    """An artifact folder given as the model, and --trt yes where no plan can be built: refused before loading."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    line = cli_error(export.main, [str(folder), "-o", str(tmp_path / "a")], capsys)
    assert "is a folder" in line and "model.pt" in line
    if importlib.util.find_spec("tensorrt") is None:
        model = tmp_path / "model.pt"
        model.write_bytes(b"not read: refused first")
        line = cli_error(export.main, [str(model), "-o", str(tmp_path / "b"), "--trt", "yes"], capsys)
        assert "--trt yes" in line and "TensorRT" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written
