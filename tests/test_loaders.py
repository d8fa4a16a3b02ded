"""On-disk loaders: SynthScenes exported to the PASCAL-Context and NYUD-v2 layouts loads back as the in-memory samples,
and every kind of bad input is a DataError naming the file (or, with skip_bad, a warning and a count)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from vmt_adapter.cli import main
from vmt_adapter.data import build_dataset, dataset_channels
from vmt_adapter.data.export import export_synth
from vmt_adapter.data.nyud import NYUDv2MT
from vmt_adapter.data.pascal import PascalContextMT, edges_from_labelmap, normals_valid_classes, thin
from vmt_adapter.data.synth import SPLITS, SynthScenes, render_sample
from vmt_adapter.data.transforms import build_transform
from vmt_adapter.errors import ConfigError, DataError
from vmt_adapter.tasks import IGNORE_INDEX

SIZE, NUM = 64, 5  # 4 train + 1 val
PASCAL_TASKS = ["semseg", "human_parts", "sal", "normals", "edge"]
NYUD_TASKS = ["semseg", "depth", "normals", "edge"]


@pytest.fixture(scope="module")
def pascal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pascal")
    export_synth(root, NUM, SIZE, layout="pascal")
    return root


@pytest.fixture(scope="module")
def nyud_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nyud")
    export_synth(root, NUM, SIZE, layout="nyud")
    return root


@pytest.fixture
def pascal_copy(pascal_root: Path, tmp_path: Path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(pascal_root, tmp_path / "pascal"))


def in_memory(split: str, n: int) -> list[dict]:
    """The SynthScenes samples the export wrote: raw numpy dicts with every task, plus the context ids."""
    scenes = SynthScenes(split, tasks=SynthScenes.PROVIDES, size=SIZE, num=n)
    return [dict(scenes.raw(i), context=render_sample(0, SPLITS[split][i], SIZE)["context"]) for i in range(n)]


@pytest.mark.parametrize("split", ["train", "val"])
def test_pascal_export_loads_back(pascal_root: Path, split: str) -> None:
    ds = PascalContextMT(pascal_root, split, PASCAL_TASKS)
    to_tensors = build_transform(train=False, size=None)
    assert len(ds) == (4 if split == "train" else 1)
    for i, ref in enumerate(in_memory(split, len(ds))):
        raw, got = ds.raw(i), ds[i]
        want = to_tensors(ref)
        assert got["id"] == ref["id"]
        assert np.abs(raw["image"].astype(int) - ref["image"]).mean() < 4.0  # JPEG q95
        for task in ("semseg", "human_parts", "sal"):
            assert torch.equal(got[task], want[task]), task
        valid = want["normals"].norm(dim=0) > 0
        assert torch.equal(got["normals"].norm(dim=0) > 0, valid)
        assert (got["normals"] - want["normals"]).abs().max() < 0.01  # 8-bit PNG quantisation
        assert torch.equal(got["edge"], torch.from_numpy(edges_from_labelmap(ref["context"])).long())
        assert got["edge"].sum() > 0
        facing_up = ref["normals"][..., 1] > 0.5  # the floor, in the project's y-up frame
        stored = np.asarray(Image.open(pascal_root / "normals_distill" / f"{ref['id']}.png"))
        assert facing_up.any() and (stored[facing_up, 1] < 128).all()  # the file keeps NYU's y-down frame


def test_pascal_parts_cover_both_cases(pascal_root: Path) -> None:
    """Images with the figure get a 0..6 map, images without it are all ignore, as in PASCAL."""
    ds = PascalContextMT(pascal_root, "train", ["human_parts"])
    maps = [ds[i]["human_parts"] for i in range(len(ds))]
    assert any((m == IGNORE_INDEX).all() for m in maps)
    assert any(m.max() <= 6 and m.max() > 0 for m in maps)


def test_human_parts_mat_has_the_pascal_part_structure(pascal_root: Path) -> None:
    sample_id = (pascal_root / "ImageSets/Context/train.txt").read_text().split()[1]
    anno = scipy.io.loadmat(pascal_root / "human_parts" / f"{sample_id}.mat")["anno"]
    assert anno.dtype.names == ("imname", "objects")
    objects = anno[0][0][1][0]
    assert objects.dtype.names == ("class", "class_ind", "mask", "parts")
    classes = [int(o[1][0][0]) for o in objects]
    assert 15 in classes and any(c != 15 for c in classes)  # non-person objects too
    person = objects[classes.index(15)]
    assert person[2].shape == (SIZE, SIZE) and person[3].dtype.names == ("part_name", "mask")
    names = {str(p[0][0]) for p in person[3][0]}
    assert "head" in names and "torso" in names
    assert all(len(o[3]) == 0 for o, c in zip(objects, classes) if c != 15)


def test_normals_are_kept_only_on_nyu_compatible_classes(pascal_copy: Path) -> None:
    sample_id = (pascal_copy / "ImageSets/Context/train.txt").read_text().split()[0]
    path = pascal_copy / "pascal-context" / "trainval" / f"{sample_id}.mat"
    label_map = scipy.io.loadmat(path)["LabelMap"]
    invalid = next(c for c in range(1, 460) if c not in normals_valid_classes())
    label_map[: SIZE // 2] = invalid
    scipy.io.savemat(path, {"LabelMap": label_map})
    normals = PascalContextMT(pascal_copy, "train", ["normals"])[0]["normals"]
    assert (normals[:, : SIZE // 2] == 0).all() and (normals[:, SIZE // 2 :].norm(dim=0) > 0).any()


@pytest.mark.parametrize("split", ["train", "val"])
def test_nyud_export_loads_back(nyud_root: Path, split: str) -> None:
    ds = NYUDv2MT(nyud_root, split, NYUD_TASKS)
    to_tensors = build_transform(train=False, size=None)
    for i, ref in enumerate(in_memory(split, len(ds))):
        got, want = ds[i], to_tensors(ref)
        assert got["id"] == ref["id"]
        for task in NYUD_TASKS:
            assert torch.equal(got[task], want[task]), task
        stored = np.load(nyud_root / "normals" / f"{ref['id']}.npy")
        assert np.array_equal(stored[..., 1], -ref["normals"][..., 1])  # y down on disk
        assert np.abs(ds.raw(i)["image"].astype(int) - ref["image"]).mean() < 4.0


def test_loaders_feed_the_training_transform(pascal_root: Path, nyud_root: Path) -> None:
    for ds in (
        build_dataset("pascal", pascal_root, "train", PASCAL_TASKS, 32, train=True, num=2),
        build_dataset("nyud", nyud_root, "train", NYUD_TASKS, 32, train=True),
    ):
        x = ds[0]
        assert x["image"].shape == (3, 32, 32) and x["semseg"].shape == (32, 32) and x["normals"].shape == (3, 32, 32)
    assert len(build_dataset("pascal", pascal_root, "train", "semseg", None, train=False, num=2)) == 2


def test_build_dataset_rejects_bad_configs(pascal_root: Path) -> None:
    with pytest.raises(ConfigError, match="choose from synth, pascal, nyud"):
        build_dataset("coco", pascal_root, "train", "semseg", 32, train=False)
    with pytest.raises(ConfigError, match="it provides semseg, depth, normals, edge"):
        build_dataset("nyud", pascal_root, "train", "sal", 32, train=False)
    with pytest.raises(ConfigError, match="needs a root"):
        build_dataset("pascal", None, "train", "semseg", 32, train=False)
    synth = build_dataset("synth", None, "val", "semseg,sal", 16, train=False, num=2)
    assert len(synth) == 2 and synth[1]["semseg"].shape == (16, 16)
    assert dataset_channels("nyud") == {"semseg": 40} and dataset_channels("pascal") == {}
    assert dataset_channels("synth") == synth.task_channels


# ---------------------------------------------------------------------------------- bad input


def test_missing_root_and_split_file(tmp_path: Path, pascal_root: Path) -> None:
    with pytest.raises(DataError, match="nowhere.*root not found"):
        PascalContextMT(tmp_path / "nowhere", "train", ["semseg"])
    with pytest.raises(DataError, match=r"ImageSets/Context/test\.txt: split file not found"):
        PascalContextMT(pascal_root, "test", ["semseg"])
    with pytest.raises(DataError, match=r"gt_sets/train\.txt: split file not found"):
        NYUDv2MT(pascal_root, "train", ["semseg"])


def test_missing_file_names_it_or_is_skipped(pascal_copy: Path) -> None:
    sample_id = (pascal_copy / "ImageSets/Context/train.txt").read_text().split()[2]
    missing = pascal_copy / "sal_distill" / f"{sample_id}.png"
    missing.unlink()
    with pytest.raises(DataError, match=rf"{missing}: file not found"):
        PascalContextMT(pascal_copy, "train", ["sal"])
    PascalContextMT(pascal_copy, "train", ["semseg"])  # tasks that do not need it still load
    with pytest.warns(UserWarning, match="skipped 1 id"):
        ds = PascalContextMT(pascal_copy, "train", ["sal"], skip_bad=True)
    assert len(ds) == 3 and ds.skipped == [sample_id]


def damage(path: Path, how: str) -> None:
    """Replace a file by garbage, an out-of-range label map, or a map of the wrong size."""
    if how == "garbage":
        path.write_bytes(b"not an image or a mat file")
    elif how == "range":
        Image.fromarray(np.full((SIZE, SIZE), 30, np.uint8)).save(path)
    else:
        Image.fromarray(np.zeros((SIZE, SIZE + 3), np.uint8)).save(path)


@pytest.mark.parametrize(
    ("folder", "ext", "task", "how", "message"),
    [
        ("JPEGImages", ".jpg", "semseg", "garbage", "cannot read image"),
        ("human_parts", ".mat", "human_parts", "garbage", "cannot read human parts"),
        ("pascal-context/trainval", ".mat", "edge", "garbage", "cannot read LabelMap"),
        ("semseg/pascal-context", ".png", "semseg", "range", "semseg value 30 out of range"),
        ("sal_distill", ".png", "sal", "size", "saliency is 64x67"),
        ("normals_distill", ".png", "normals", "size", "shape .64, 67.*3-channel"),
    ],
)
def test_bad_file_is_a_data_error_naming_it(
    pascal_copy: Path, folder: str, ext: str, task: str, how: str, message: str
) -> None:
    ids = (pascal_copy / "ImageSets/Context/train.txt").read_text().split()
    bad = pascal_copy / folder / f"{ids[1]}{ext}"
    damage(bad, how)
    ds = PascalContextMT(pascal_copy, "train", [task])
    with pytest.raises(DataError, match=message) as info:
        ds[1]
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    skipping = PascalContextMT(pascal_copy, "train", [task], skip_bad=True)
    with pytest.warns(UserWarning, match="1 skipped so far"):
        assert skipping[1]["id"] == ids[2]  # the next good sample stands in
    assert skipping.skipped == [ids[1]]


def test_nyud_bad_labels_and_shapes(nyud_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(nyud_root, tmp_path / "nyud"))
    ids = (root / "gt_sets/train.txt").read_text().split()
    seg = root / "segmentation" / f"{ids[0]}.png"
    Image.fromarray(np.full((SIZE, SIZE), 41, np.uint8)).save(seg)
    with pytest.raises(DataError, match=rf"{seg}: segmentation value 41 out of range \(expected 0..40\)"):
        NYUDv2MT(root, "train", ["semseg"])[0]
    depth = root / "depth" / f"{ids[1]}.npy"
    np.save(depth, np.ones((SIZE, SIZE - 1), np.float32))
    with pytest.raises(DataError, match=rf"{depth}: depth is 64x63"):
        NYUDv2MT(root, "train", ["depth"])[1]
    edge = root / "edge" / f"{ids[2]}.npy"
    np.save(edge, np.full((SIZE, SIZE), 2, np.uint8))
    with pytest.raises(DataError, match="edge values must be 0 or 1"):
        NYUDv2MT(root, "train", ["edge"]).raw(2)


# ---------------------------------------------------------------------------------- edges


def test_thin_matches_skimage_reference_case() -> None:
    """The worked example of scikit-image's ``test_skeletonize.py`` (``TestThin.test_noiter``)."""
    image = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5, 0], [0, 1, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 0],
                      [0, 6, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]])  # fmt: skip
    expected = np.zeros((7, 7), bool)
    expected[[1, 2, 2, 3], [2, 1, 3, 2]] = True
    assert np.array_equal(thin(image), expected)


def test_edges_of_a_square_are_a_thin_closed_contour() -> None:
    label_map = np.zeros((20, 20), np.uint16)
    label_map[5:15, 5:15] = 7
    edge = edges_from_labelmap(label_map)
    assert edge[10, :].sum() == 2 and edge[:, 10].sum() == 2  # one pixel wide on each side
    assert edge[:4].sum() == 0 and edge[16:].sum() == 0


# ---------------------------------------------------------------------------------- command


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "export-synth", "--out", str(tmp_path), "--num", "2", "--size", "16", "--layout", "nyud"]) == 0
    assert "wrote 2 train and 0 val samples" in capsys.readouterr().out
    assert NYUDv2MT(tmp_path, "train", ["depth"])[0]["depth"].shape == (1, 16, 16)
    assert main(["data", "export-synth", "--out", str(tmp_path), "--num", "0", "--size", "16"]) == 2


def test_repeated_id_in_a_split_file_is_refused(pascal_copy: Path) -> None:
    split = pascal_copy / "ImageSets" / "Context" / "train.txt"
    ids = split.read_text().split()
    split.write_text("\n".join(ids + [ids[0], ids[0]]) + "\n")
    with pytest.raises(DataError, match=f"id '{ids[0]}' is listed 3 times"):
        PascalContextMT(pascal_copy, "train", ["semseg"])


def test_export_into_a_non_empty_folder_needs_overwrite(pascal_copy: Path) -> None:
    split = pascal_copy / "ImageSets" / "Context" / "train.txt"
    before = split.read_text()
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        export_synth(pascal_copy, 2, SIZE, layout="pascal")
    assert split.read_text() == before
    export_synth(pascal_copy, 2, SIZE, layout="pascal", overwrite=True)
    assert split.read_text().split() == ["synth_train_000000", "synth_train_000001"]


@pytest.mark.parametrize("bad, expected", [
    (lambda d: d.astype(np.complex64), "holds complex numbers"),
    (lambda d: np.where(d > 0, 1e300, 0.0), "must be finite and >= 0 in float32"),
])
def test_nyud_depth_that_is_not_real_float32_is_refused(nyud_root: Path, tmp_path: Path, bad, expected: str) -> None:
    root = tmp_path / "nyud"
    shutil.copytree(nyud_root, root)
    sample = (root / "gt_sets" / "train.txt").read_text().split()[0]
    path = root / "depth" / f"{sample}.npy"
    np.save(path, bad(np.load(path).astype(np.float64)))
    with pytest.raises(DataError, match=expected):
        NYUDv2MT(root, "train", ["depth"]).raw(0)


def test_data_check_passes_an_export_and_names_a_deleted_or_truncated_file(pascal_copy: Path, capsys) -> None:
    assert main(["data", "check", "--root", str(pascal_copy), "--deep"]) == 0
    out = capsys.readouterr().out
    assert "no problem found" in out and "pascal layout" in out
    ids = (pascal_copy / "ImageSets" / "Context" / "train.txt").read_text().split()
    gone = pascal_copy / "sal_distill" / f"{ids[0]}.png"
    gone.unlink()
    cut = pascal_copy / "semseg" / "pascal-context" / f"{ids[1]}.png"
    cut.write_bytes(cut.read_bytes()[:20])
    assert main(["data", "check", "--root", str(pascal_copy), "--deep"]) == 1
    out = capsys.readouterr().out
    assert f"- {gone}: missing (id '{ids[0]}', task sal, train)" in out
    assert str(cut) in out and "2 problem(s)" in out


def test_data_check_names_a_missing_split_and_a_symlink_loop(pascal_copy: Path, capsys) -> None:
    ids = (pascal_copy / "ImageSets" / "Context" / "train.txt").read_text().split()
    image = pascal_copy / "JPEGImages" / f"{ids[0]}.jpg"
    image.unlink()
    image.symlink_to(image.name)  # a link to itself: opening it loops
    (pascal_copy / "ImageSets" / "Context" / "val.txt").unlink()
    assert main(["data", "check", "--root", str(pascal_copy), "--deep"]) == 1
    out = capsys.readouterr().out
    assert f"- {pascal_copy / 'ImageSets' / 'Context' / 'val.txt'}: split file not found" in out
    assert f"- {image}: missing (id '{ids[0]}', task semseg, train)" in out and "Traceback" not in out


def test_data_check_nyud_layout_is_detected(nyud_root: Path, capsys) -> None:
    assert main(["data", "check", "--root", str(nyud_root)]) == 0
    assert "nyud layout" in capsys.readouterr().out


def test_export_size_is_capped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="size in 2..4096"):
        export_synth(tmp_path / "big", 1, 100_000)


def test_a_missing_eval_split_is_refused_before_training(pascal_copy: Path, tmp_path: Path, capsys) -> None:
    args = ["train", "--config", "synth-vmt", "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"]
    sets = ["data.name=pascal", f"data.root={pascal_copy}", "data.size=32", "eval.split=test", "model.pretrained=",
            "tasks=[semseg]", "train.batch_size=2", "data.num_train=2"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 2
    assert "test.txt: split file not found" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_nyud_config_trains_on_an_exported_layout(nyud_root: Path, tmp_path: Path) -> None:
    """The shipped NYUD-v2 recipe, shrunk to a tiny backbone and one step, runs end to end on the layout."""
    from vmt_adapter.cli import main

    sets = [f"data.root={nyud_root}", "data.size=32", "data.workers=0", "model.backbone=swin_nano",
            "model.pretrained=", "train.batch_size=2", "train.precision=fp32", "eval.batch_size=2"]
    args = ["train", "--config", "nyud-swin-t-vmt", "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    import json

    metrics = json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]
    assert set(metrics) == {"semseg", "depth", "normals", "edge"}


def test_a_dataset_registered_in_its_own_file_trains_evaluates_and_is_recorded(tmp_path: Path) -> None:
    """A toy dataset declared and registered here (what its own module would do), and nothing edited
    elsewhere: config validation takes its name, splits and tasks, ``build_dataset`` serves it through the
    project's transform, a two-step training run evaluates on it, and eval.json records its VERSION."""
    import json

    from vmt_adapter.data.registry import DATASETS, register_dataset

    class Toy(torch.utils.data.Dataset):
        NAME, PROVIDES, task_channels, CLASS_NAMES = "toy", ("semseg", "sal"), {"semseg": 3}, {}
        NEEDS_ROOT, SPLITS, VERSION, EXPECTED_IDS = False, ("train", "val"), "toy-1", {}

        def __init__(self, transform, num: int) -> None:
            self.transform, self.num = transform, num

        @classmethod
        def detect(cls, root: Path) -> bool:
            return False

        @classmethod
        def build(cls, root, split, tasks, transform, size=None, num=None, cache_dir=None):
            return cls(transform, num or 8)

        def __len__(self) -> int:
            return self.num

        def raw(self, i: int) -> dict:
            rng = np.random.default_rng(i)
            labels = rng.integers(0, 3, (32, 32)).astype(np.uint8)
            return {"image": rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), "semseg": labels,
                    "sal": (labels == 1).astype(np.uint8), "id": f"toy_{i}"}

        def __getitem__(self, i: int) -> dict:
            return self.transform(self.raw(i))

    register_dataset(Toy)
    try:
        sample = build_dataset("toy", None, "train", ["semseg", "sal"], 32, train=True)[0]
        assert sample["image"].shape == (3, 32, 32) and sample["semseg"].dtype == torch.int64
        assert dataset_channels("toy") == {"semseg": 3}
        run = tmp_path / "run"
        args = ["train", "--set", "data.name=toy", "--set", "tasks=[semseg,sal]", "--set", "data.size=32",
                "--set", "model.pretrained=", "--set", "model.hparams={bottleneck: 8}", "--set", "train.batch_size=2",
                "--set", "eval.batch_size=4", "--steps", "2", "--out", str(run), "--no-progress"]
        assert main(args) == 0
        record = json.loads((run / "eval.json").read_text())
        assert record["dataset"] == "toy" and record["dataset_version"] == "toy-1"
        assert set(record["metrics"]) == {"semseg", "sal"}
        with pytest.raises(ConfigError, match="Toy has no split 'test'"):
            main(["--debug", "train", *args[1:-3], "--set", "eval.split=test", "--out", str(tmp_path / "other")])
    finally:
        DATASETS.pop("toy")
