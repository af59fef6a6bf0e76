"""Dataset converters (benchmarks/datasets): tiny fake KolektorSDD and DeepPCB trees made in tmp_path."""
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from benchmarks.datasets import deeppcb, holdout, kolektorsdd
from benchmarks.datasets.kolektorsdd import ConvertError


def _files(d):
    return sorted(p.name for p in d.glob("*.png"))


def _jpg(path, h=40, w=30, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w), value, np.uint8))


@pytest.fixture
def kolektor_src(tmp_path):
    """6 good images (one without a label file) and 2 defective ones (a polygon, a box) over train/ and val/."""
    root = tmp_path / "src" / "Datasets"
    root.mkdir(parents=True)
    (root / "data.yaml").write_text('path: Datasets\nnc: 1\nnames: ["crack"]  # class\ntask: segment\n')
    labels = {"train/000": "", "train/001": "", "train/002": "\n", "train/003": "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5",
              "val/004": "", "val/005": "0 0.5 0.5 0.2 0.1\n", "val/006": ""}
    for name, text in labels.items():
        _jpg(root / "images" / f"{name}.jpg")
        (root / "labels" / f"{name}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.txt").write_text(text)
    _jpg(root / "images" / "val" / "007.jpg")  # no label file: good
    return tmp_path / "src"


def test_kolektor_split_and_masks(kolektor_src, tmp_path):
    counts = kolektorsdd.convert(kolektor_src, tmp_path / "out")
    cat = tmp_path / "out" / "kolektorsdd"
    assert counts == {"ground_truth/crack": 2, "test/crack": 2, "test/good": 2, "train/good": 4}
    assert sorted(_files(cat / "train" / "good") + _files(cat / "test" / "good")) == \
        ["000.png", "001.png", "002.png", "004.png", "006.png", "007.png"]
    assert _files(cat / "test" / "crack") == ["003.png", "005.png"]
    poly = cv2.imread(str(cat / "ground_truth" / "crack" / "003_mask.png"), cv2.IMREAD_UNCHANGED)
    assert poly.shape == (40, 30) and poly.dtype == np.uint8 and set(np.unique(poly)) == {0, 255}
    ys, xs = np.nonzero(poly)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (3, 15, 4, 20)  # 0.1..0.5 of 30 wide, 40 high
    box = cv2.imread(str(cat / "ground_truth" / "crack" / "005_mask.png"), cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero(box)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (12, 18, 18, 22)  # cx 0.5 w 0.2, cy 0.5 h 0.1
    assert cv2.imread(str(cat / "test" / "crack" / "003.png"), cv2.IMREAD_UNCHANGED).shape == (40, 30)


def test_kolektor_split_is_seeded(kolektor_src, tmp_path):
    def train_set(seed, name):
        kolektorsdd.convert(kolektor_src, tmp_path / name, seed=seed)
        return _files(tmp_path / name / "kolektorsdd" / "train" / "good")

    base = train_set(0, "a")
    assert train_set(0, "b") == base
    assert any(train_set(s, f"s{s}") != base for s in (1, 2, 3))


def test_kolektor_max_side(kolektor_src, tmp_path):
    kolektorsdd.convert(kolektor_src, tmp_path / "out", max_side=20)
    cat = tmp_path / "out" / "kolektorsdd"
    img = cv2.imread(str(cat / "test" / "crack" / "003.png"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(cat / "ground_truth" / "crack" / "003_mask.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == mask.shape == (20, 15) and set(np.unique(mask)) == {0, 255}
    assert cv2.imread(str(next((cat / "train" / "good").glob("*.png"))), cv2.IMREAD_UNCHANGED).shape == (20, 15)


@pytest.mark.parametrize("line", ["0 0.1 0.2 0.3", "0 0.1 0.2 0.3 0.4 0.5", "1 0.5 0.5 0.1 0.1", "0 0.5 x 0.1 0.1",
                                  "0 0.1 0.1 0.5 0.1 1.5 0.5", "0.5 0.5 0.5 0.1 0.1"])
def test_kolektor_malformed_line(line):
    with pytest.raises(ConvertError, match=r"f\.txt:2:"):
        kolektorsdd.parse_label("\n" + line, 1, "f.txt")


def test_kolektor_cli_errors(kolektor_src, tmp_path, capsys):
    out = tmp_path / "out"
    assert kolektorsdd.main(["--out", str(out), "--src", str(tmp_path / "nowhere")]) == 2
    assert "missing folder" in capsys.readouterr().err
    (kolektor_src / "Datasets" / "labels" / "val" / "005.txt").write_text("0 0.5 0.5\n")
    assert kolektorsdd.main(["--out", str(out), "--src", str(kolektor_src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "005.txt:1:" in err
    assert not out.exists()  # labels are checked before anything is written


def test_kolektor_force_and_repo(kolektor_src, tmp_path, capsys):
    """--repo extracts HEAD of a git directory; a second run needs --force, which replaces the category."""
    git = ["git", "-C", str(kolektor_src), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fake"]):
        subprocess.run(git + args, check=True, capture_output=True)
    out = tmp_path / "out"
    assert kolektorsdd.main(["--out", str(out), "--repo", str(kolektor_src / ".git")]) == 0
    assert "kolektorsdd/train/good: 4" in capsys.readouterr().out
    stale = out / "kolektorsdd" / "train" / "good" / "stale.png"
    shutil.copy(out / "kolektorsdd" / "test" / "crack" / "003.png", stale)
    assert kolektorsdd.main(["--out", str(out), "--repo", str(kolektor_src / ".git")]) == 2
    assert "--force" in capsys.readouterr().err and stale.exists()
    assert kolektorsdd.main(["--out", str(out), "--src", str(kolektor_src), "--force"]) == 0
    assert not stale.exists() and len(_files(out / "kolektorsdd" / "train" / "good")) == 4
    assert kolektorsdd.main(["--out", str(out), "--repo", str(tmp_path / "nowhere"), "--force"]) == 2
    assert "git archive failed" in capsys.readouterr().err


@pytest.fixture
def pcb_src(tmp_path):
    """Two groups of 5 complete pairs each (boxes with spaces or commas) plus one template without its pair."""
    root = tmp_path / "src" / "PCBData"
    for group in ("00001", "00002"):
        for i in range(5):
            stem = f"{group}{i:03d}"
            _jpg(root / f"group{group}" / group / f"{stem}_temp.jpg", 64, 64, 255)
            _jpg(root / f"group{group}" / group / f"{stem}_test.jpg", 64, 64, 0)
            label = root / f"group{group}" / f"{group}_not" / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("10 20 19 29 1\n40,40,63,50,6\n" if i % 2 else "0 0 5 5 3")
    _jpg(root / "group00001" / "00001" / "00001999_temp.jpg", 64, 64)
    return tmp_path / "src"


def test_deeppcb_groups_split_and_masks(pcb_src, tmp_path, capsys):
    counts = deeppcb.convert(pcb_src, tmp_path / "out", groups=["group00001", "00002"])
    assert "skipped pair 00001999: missing group00001/00001/00001999_test.jpg" in capsys.readouterr().err
    expected = {"ground_truth/defect": 2, "test/defect": 2, "test/good": 2, "train/good": 3}
    assert counts == {"pcb_00001": expected, "pcb_00002": expected}
    cat = tmp_path / "out" / "pcb_00001"
    test_stems = _files(cat / "test" / "defect")
    assert test_stems == _files(cat / "test" / "good")
    assert not set(test_stems) & set(_files(cat / "train" / "good"))
    assert cv2.imread(str(cat / "train" / "good" / _files(cat / "train" / "good")[0]), -1).min() == 255  # template
    for name in test_stems:
        assert cv2.imread(str(cat / "test" / "defect" / name), -1).max() == 0  # tested image
        mask = cv2.imread(str(cat / "ground_truth" / "defect" / name.replace(".png", "_mask.png")), -1)
        expected_mask = np.zeros((64, 64), np.uint8)
        if int(name[-5]) % 2:
            expected_mask[20:30, 10:20] = expected_mask[40:51, 40:64] = 255
        else:
            expected_mask[0:6, 0:6] = 255
        np.testing.assert_array_equal(mask, expected_mask)


def test_deeppcb_all_groups_and_max_side(pcb_src, tmp_path):
    counts = deeppcb.convert(pcb_src / "PCBData", tmp_path / "out", groups=["all"], max_side=32)
    assert sorted(counts) == ["pcb_00001", "pcb_00002"]
    mask = next((tmp_path / "out" / "pcb_00002" / "ground_truth" / "defect").glob("*.png"))
    assert cv2.imread(str(mask), -1).shape == (32, 32)


@pytest.mark.parametrize("line", ["10 20 19 29", "10 20 19 29 7", "19 20 10 29 1", "a,b,c,d,1", "1 2 3 4 5 6"])
def test_deeppcb_malformed_line(line):
    with pytest.raises(ConvertError, match=r"x\.txt:1:"):
        deeppcb.parse_boxes(line, "x.txt")


def test_deeppcb_cli_errors(pcb_src, tmp_path, capsys):
    out = tmp_path / "out"
    assert deeppcb.main(["--out", str(out), "--src", str(pcb_src), "--groups", "00003"]) == 2
    assert "missing folder" in capsys.readouterr().err
    assert deeppcb.main(["--out", str(out), "--src", str(pcb_src), "--groups", "00001", "--max-side", "0"]) == 2
    assert "--max-side" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# the held-out check set (benchmarks/datasets/holdout.py): built from skimage photos, no source tree

def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_holdout_layout_masks_and_defects(tmp_path):
    counts = holdout.build(tmp_path, seed=3, n_train=2, n_good=1, n_defect=4, size=128,
                           categories=("moon", "retina"))
    expected = {"train/good": 2, "test/good": 1, **{f"test/{k}": 1 for k in holdout.DEFECT_KINDS},
                **{f"ground_truth/{k}": 1 for k in holdout.DEFECT_KINDS}}
    assert counts == {"moon": expected, "retina": expected}
    for cat in ("moon", "retina"):
        assert _read(tmp_path / cat / "train" / "good" / "000.png").shape == (128, 128, 3)
        for kind in holdout.DEFECT_KINDS:
            mask = _read(tmp_path / cat / "ground_truth" / kind / "000_mask.png")
            assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
            assert 0.002 <= (mask > 0).mean() <= 0.05


def test_holdout_defect_changes_the_masked_pixels():
    rng = np.random.default_rng(0)
    img = rng.uniform(60, 190, (128, 128, 3)).astype(np.float32)
    for kind in holdout.DEFECT_KINDS:
        out, mask = holdout.add_defect(img, kind, np.random.default_rng(1))  # never None on this busy image
        change = np.abs(out - img).mean(2)
        assert change[mask].mean() >= 4 and change[mask].mean() > 3 * change[~mask].mean(), kind


def test_holdout_is_seeded(tmp_path):
    def first_train(seed, name):
        holdout.build(tmp_path / name, seed=seed, n_train=1, n_good=0, n_defect=0, size=64, categories=("ihc",))
        return _read(tmp_path / name / "ihc" / "train" / "good" / "000.png")

    assert np.array_equal(first_train(5, "a"), first_train(5, "b"))
    assert not np.array_equal(first_train(5, "a2"), first_train(6, "c"))


@pytest.mark.parametrize("args, message", [
    (["--size", "32"], "--size must be >= 64"),
    (["--category", "brick"], "unknown categories ['brick']"),
    ([], "is not empty (pass --force"),
])
def test_holdout_bad_arguments_one_line(tmp_path, capsys, args, message):
    (tmp_path / "moon").mkdir()
    (tmp_path / "moon" / "keep.txt").write_text("user file")
    assert holdout.main(["--out", str(tmp_path), "--n-train", "1", "--n-good", "0", "--n-defect", "0",
                         "--category", "moon", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert (tmp_path / "moon" / "keep.txt").read_text() == "user file"


def test_holdout_blur_on_a_flat_view_draws_a_new_view():
    busy = np.random.default_rng(0).uniform(60, 190, (128, 128, 3)).astype(np.float32)
    views = iter([np.full((128, 128, 3), 100, np.float32), busy])
    image, mask = holdout._defective_view(lambda photo, rng, size: next(views), None, "blur",
                                          np.random.default_rng(2), 128)
    assert np.abs(image - busy).mean(2)[mask].mean() >= 4  # drawn on the second (busy) view
    with pytest.raises(ConvertError, match="no visible blur defect on 20 views"):
        holdout._defective_view(lambda photo, rng, size: np.full((128, 128, 3), 100, np.float32), None, "blur",
                                np.random.default_rng(2), 128)
