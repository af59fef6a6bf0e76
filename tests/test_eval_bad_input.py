"""cpr-eval on a test split with files it cannot use: refused as a whole (exit status 2, one line that
counts them and names the first few), before any result file is written: metrics over the images
that could be read would describe another test set."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from cpr_engine.cli import eval as eval_cli
from cpr_engine.data import load_split, write_image
from cpr_engine.errors import InputError
from cpr_engine.evaluate import evaluate_samples
from tests.helpers.cli import cli_error

EARLIER = b'{"cpr_eval_format": 1, "rows": "an earlier evaluation"}\n'


@pytest.fixture
def data(demo_root, tmp_path):
    """A copy of the tiny demo's grass category (3 good + 4 defective test images), free to damage."""
    shutil.copytree(Path(demo_root) / "grass", tmp_path / "data" / "grass")
    return tmp_path / "data"


@pytest.fixture
def models(tiny_detector, tmp_path):
    """A run folder with the tiny grass model and the eval.json of an earlier evaluation."""
    tiny_detector.save(tmp_path / "runs" / "grass" / "model.pt")
    (tmp_path / "runs" / "eval.json").write_bytes(EARLIER)
    return tmp_path / "runs"


def _eval_error(data, models, capsys, *extra) -> str:
    line = cli_error(eval_cli.main, ["--data", str(data), "--models", str(models), "--quiet", "--device", "cpu",
                                     *extra], capsys)
    assert (models / "eval.json").read_bytes() == EARLIER and not (models / "eval.csv").exists()
    return line


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:200])
    return path


def test_every_unreadable_test_image_is_named_before_any_result(data, models, capsys):
    test = data / "grass" / "test"
    truncated = _truncate(test / "good" / "001.png")
    garbage = test / "hole" / "000.png"
    garbage.write_bytes(b"not an image")
    empty = test / "stain" / "000.png"
    empty.write_bytes(b"")
    # batches of 2: the three files lie in three different batches, the last one at the end of the split
    line = _eval_error(data, models, capsys, "--batch-size", "2")
    assert "3 of the 7 test images cannot be read" in line and "no metrics computed" in line
    assert f"{str(truncated)!r}: truncated or corrupt PNG" in line
    assert str(garbage) in line and f"{str(empty)!r}: file is empty" in line
    assert not line.endswith(" more")


def test_many_unreadable_images_are_counted_and_the_first_few_named(data, models, capsys):
    files = sorted((data / "grass" / "test").glob("*/*.png"))
    for path in files[:5]:
        _truncate(path)
    line = _eval_error(data, models, capsys)
    assert "5 of the 7 test images cannot be read" in line and line.endswith("and 2 more")
    assert [str(p) in line for p in files[:5]] == [True, True, True, False, False]


def test_unreadable_or_misfit_masks_are_named(data, models, capsys):
    gt = data / "grass" / "ground_truth"
    corrupt = _truncate(gt / "hole" / "000_mask.png")
    small = gt / "patch" / "000_mask.png"
    write_image(small, np.zeros((8, 8, 3), np.uint8))
    line = _eval_error(data, models, capsys)
    assert "2 of the 7 test images cannot be read (the image or its ground-truth mask)" in line
    assert str(corrupt) in line
    assert str(small) in line and "differs from the size 96x96" in line
    assert str(data / "grass" / "test" / "patch" / "000.png") in line  # the image of the mask of another size


def test_missing_masks_are_named_before_any_model_is_loaded(data, models, capsys):
    # a second category without a model: listed first (natural order), yet the masks are refused first
    shutil.copytree(data / "grass", data / "brick")
    for defect in ("hole", "stain"):
        (data / "grass" / "ground_truth" / defect / "000_mask.png").unlink()
    line = _eval_error(data, models, capsys)
    assert "no model file" not in line
    assert "2 defective images have no ground-truth mask in all" in line
    assert str(data / "grass" / "test" / "hole" / "000.png") in line
    assert str(data / "grass" / "test" / "stain" / "000.png") in line


def test_a_fresh_output_folder_is_not_created_for_a_refused_split(data, models, tmp_path, capsys):
    (data / "grass" / "ground_truth" / "hole" / "000_mask.png").unlink()
    line = cli_error(eval_cli.main, ["--data", str(data), "--models", str(models), "--out", str(tmp_path / "out"),
                                     "--quiet", "--device", "cpu"], capsys)
    assert "has no ground-truth mask" in line and not (tmp_path / "out").exists()


def test_the_api_raises_one_input_error_naming_every_unreadable_file(data, tiny_detector):
    samples = load_split(data, "mvtec", "grass", "test")
    bad = [_truncate(Path(samples[0].image_path)), _truncate(Path(samples[-1].image_path))]
    with pytest.raises(InputError, match="2 of the 7 test images cannot be read") as error:
        evaluate_samples(tiny_detector, samples, batch_size=3)
    assert all(str(p) in str(error.value) for p in bad) and "\n" not in str(error.value)


def test_a_readable_split_is_still_evaluated(data, models, capsys):
    assert eval_cli.main(["--data", str(data), "--models", str(models), "--quiet", "--device", "cpu"]) == 0
    assert "image_AUROC" in capsys.readouterr().out
    assert (models / "eval.json").read_bytes() != EARLIER and (models / "eval.csv").is_file()


def test_a_split_without_any_mask_folder_is_evaluated_with_a_note(data, models, capsys):
    """No ground_truth/ folder at all: the generic folder layout, image metrics only, and a note on stderr that
    says so (the table shows "-" for the pixel metrics)."""
    shutil.rmtree(data / "grass" / "ground_truth")
    assert eval_cli.main(["--data", str(data), "--models", str(models), "--quiet", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "grass: no ground-truth mask for any defective test image" in captured.err
    assert "pixel metrics are not computed" in captured.err and "image_AUROC" in captured.out
