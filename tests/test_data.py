"""Data: the mini-decathlon (determinism, cache, loaders) and real-format fixtures for the real loaders."""

import csv
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdlprune.data import mini_decathlon
from mdlprune.data.crops import MultiCrop, five_crops, multi_crop, predict, ten_crops
from mdlprune.data.real.decathlon import DatasetNotFoundError, DecathlonDataset, channel_stats, decathlon_transform
from mdlprune.data.real.presets import imagenet_to_sketch, torchvision_decathlon

TINY = {"train": 24, "val": 8, "test": 10}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = mini_decathlon(size=TINY, root=tmp_path_factory.mktemp("mini"), workers=2)
    b.generate()
    return b


# -- mini-decathlon -------------------------------------------------------------------------------------
def test_domains_classes_and_shapes(bench):
    assert len(bench) >= 5 and bench.names == ["digits", "glyphs", "textures", "signs", "flowers"]
    assert bench.num_classes == [10, 40, 16, 25, 20] and bench.source.num_classes == 116
    for d in [*bench, bench.source]:
        for split, n in TINY.items():
            images, labels = d.arrays(split)
            assert images.shape == (n, 36, 36, 3) and images.dtype == np.uint8
            assert labels.tolist() == [i % d.num_classes for i in range(n)]  # balanced, prefix-stable
        assert len(d.class_names) == d.num_classes
    # images are not blank, and differ between splits
    assert bench["digits"].arrays("train")[0].std() > 20
    assert not np.array_equal(bench["digits"].arrays("train")[0][:8], bench["digits"].arrays("val")[0][:8])


def test_same_seed_gives_byte_identical_data_whatever_the_workers(bench, tmp_path):
    other = mini_decathlon(size=TINY, root=tmp_path, workers=1)
    for d in ("digits", "signs", "source"):
        for split in TINY:
            assert other[d].arrays(split)[0].tobytes() == bench[d].arrays(split)[0].tobytes()
    # the files on disk are byte-identical too
    a = (bench.cache_dir / "glyphs-train-24-images.npy").read_bytes()
    other["glyphs"].arrays("train")
    assert (other.cache_dir / "glyphs-train-24-images.npy").read_bytes() == a


def test_another_seed_gives_other_samples_of_the_same_classes(bench, tmp_path):
    other = mini_decathlon(size=TINY, root=tmp_path, seed=1, workers=1)
    assert other.cache_dir != bench.cache_dir
    x0, y0 = bench["textures"].arrays("train")
    x1, y1 = other["textures"].arrays("train")
    assert np.array_equal(y0, y1) and not np.array_equal(x0, x1)


def test_a_larger_split_extends_the_smaller_one(bench, tmp_path):
    bigger = mini_decathlon(size={"digits": {"train": 40}}, root=bench.root, workers=1)
    assert bigger["digits"].sizes["train"] == 40 and bigger["glyphs"].sizes == bigger["glyphs"].spec.sizes
    small = mini_decathlon(size={"train": 40}, root=tmp_path, workers=1)["flowers"].arrays("train")[0]
    assert np.array_equal(small[:24], bench["flowers"].arrays("train")[0])


def test_the_cache_is_reused(bench):
    path = bench.cache_dir / "digits-train-24-images.npy"
    mtime = path.stat().st_mtime_ns
    again = mini_decathlon(size=TINY, root=bench.root)
    assert again.generate() < 1.0
    assert path.stat().st_mtime_ns == mtime


def test_dataset_and_dataloader(bench):
    d = bench["flowers"]
    ds = d.dataset("train")
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 3
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)))
    assert xb.shape == (8, 3, 32, 32) and yb.tolist() == list(range(8))
    # evaluation uses the central crop, normalised with the training statistics
    ev = d.dataset("val")
    raw = torch.from_numpy(d.arrays("val")[0][0]).permute(2, 0, 1).float() / 255
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in d.stats)
    torch.testing.assert_close(ev[0][0], (raw[:, 2:34, 2:34] - mean) / std)


def test_tensor_loader_crops_flips_and_normalises(bench):
    d = bench["textures"]
    loader = d.loader("train", batch_size=10, seed=3)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [10, 10, 4]
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (24, 3, 32, 32)
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(d.arrays("train")[1].tolist())
    # evaluation order is fixed and crops are central: identical to the Dataset
    ev = d.loader("val", batch_size=8)
    xe, ye = next(iter(ev))
    torch.testing.assert_close(xe[0], d.dataset("val")[0][0])
    assert ye.tolist() == list(range(8))


def test_tensor_loader_resumes_an_epoch_exactly(bench):
    def run(loader, **kw):
        return [(x.clone(), y.clone()) for x, y in loader.iterate(**kw)]

    loader = bench["digits"].loader("train", batch_size=5, seed=7)
    run(loader)  # epoch 1
    at_boundary = loader.state_dict()
    second = run(loader)  # epoch 2 (differs from epoch 3)
    assert not torch.equal(second[0][0], run(loader)[0][0])

    # a checkpoint taken between epochs continues with the next epoch
    resumed = bench["digits"].loader("train", batch_size=5, seed=0)
    resumed.load_state_dict(at_boundary)
    for (a, ya), (b, yb) in zip(second, run(resumed)):
        assert torch.equal(a, b) and torch.equal(ya, yb)

    # a checkpoint taken in the middle of epoch 2 replays it from the interrupted batch, then goes on
    loader.load_state_dict(at_boundary)
    it = loader.iterate()
    next(it), next(it)
    mid_epoch = loader.state_dict()
    third = (list(it), run(loader))
    resumed.load_state_dict(mid_epoch)
    tail = run(resumed, start=2, resume=True)
    assert len(tail) == len(second) - 2
    for (a, _), (b, _) in zip(second[2:], tail):
        assert torch.equal(a, b)
    for (a, _), (b, _) in zip(third[1], run(resumed)):
        assert torch.equal(a, b)


def test_flips_only_where_valid(bench):
    assert bench["textures"].flip and bench["flowers"].flip and bench["source"].flip
    assert not bench["digits"].flip and not bench["glyphs"].flip and not bench["signs"].flip


def test_64_px_is_selectable(tmp_path):
    b = mini_decathlon(image_size=64, size={"train": 4, "val": 2, "test": 2}, root=tmp_path, workers=1)
    assert b["signs"].arrays("train")[0].shape == (4, 72, 72, 3)
    assert b["signs"].dataset("train")[0][0].shape == (3, 64, 64)


def test_bad_arguments(bench, tmp_path):
    with pytest.raises(ValueError, match="image_size must be 32 or 64"):
        mini_decathlon(image_size=48)
    with pytest.raises(ValueError, match="size must be 'default', 'quick' or a dict"):
        mini_decathlon(size="huge")
    with pytest.raises(ValueError, match=r"size keys must be splits"):
        mini_decathlon(size={"trian": 10})
    with pytest.raises(ValueError, match="non-negative ints"):
        mini_decathlon(size={"train": -1})
    with pytest.raises(KeyError, match="unknown domain 'svhn'"):
        bench["svhn"]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        bench["digits"].arrays("dev")


def test_a_corrupt_cache_is_regenerated(tmp_path, capfd):
    b = mini_decathlon(size={"train": 6, "val": 2, "test": 2}, root=tmp_path, workers=1)
    images = b["glyphs"].arrays("train")[0].copy()
    np.save(b.cache_dir / "glyphs-train-6-images.npy", np.zeros((5, 36, 36, 3), np.uint8))
    fresh = mini_decathlon(size={"train": 6, "val": 2, "test": 2}, root=tmp_path, workers=1)
    assert np.array_equal(fresh["glyphs"].arrays("train")[0], images)
    assert "regenerating the cached glyphs/train" in capfd.readouterr().err  # (tests/test_faults.py: more cases)


def test_quick_mode_shrinks_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MDLPRUNE_QUICK", "1")
    quick = mini_decathlon(root=tmp_path)
    assert quick["textures"].sizes == {"train": 640, "val": 60, "test": 300}  # the training set stays whole
    assert quick["source"].sizes == {"train": 200, "val": 60, "test": 100}
    monkeypatch.setenv("MDLPRUNE_QUICK", "0")
    assert mini_decathlon(root=tmp_path)["textures"].sizes == {"train": 640, "val": 400, "test": 800}


def test_sample_grid_is_saved(bench, tmp_path):
    fig = bench.sample_grid(tmp_path / "grid.png", per_domain=6)
    assert (tmp_path / "grid.png").stat().st_size > 5000
    assert len(fig.axes) == 6


# -- multi-crop -----------------------------------------------------------------------------------------
def test_crops_are_the_right_windows():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    five = five_crops(x, 4)
    assert five.shape == (5, 1, 1, 4, 4)
    assert five[0, 0, 0, 0, 0] == 7 and five[1, 0, 0, 0, 0] == 0 and five[2, 0, 0, 0, 0] == 2
    assert five[3, 0, 0, 0, 0] == 12 and five[4, 0, 0, -1, -1] == 35
    ten = ten_crops(x, 4)
    assert torch.equal(ten[5:], five.flip(-1))
    assert multi_crop(x, 4, 1).shape == (1, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="crops must be 1, 5 or 10"):
        multi_crop(x, 4, 3)
    with pytest.raises(ValueError, match="larger than the images"):
        five_crops(x, 8)


def test_predict_averages_probabilities_over_crops():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(2, 3, 10, 10)
    probs = predict(model, x, crops=10, size=8)
    expected = torch.stack([model(c).softmax(-1) for c in ten_crops(x, 8)]).mean(0)
    torch.testing.assert_close(probs, expected)
    # the same from crops made by the MultiCrop transform
    stacked = torch.stack([MultiCrop(8, 10)(img) for img in x])
    torch.testing.assert_close(predict(model, stacked), expected)
    torch.testing.assert_close(predict(model, x, crops=1, size=8), model(x[..., 1:9, 1:9]).softmax(-1))


# -- real formats: the Visual Decathlon devkit ----------------------------------------------------------
def _jpeg(path, size=(80, 72), color=(120, 30, 200)):
    """A noisy image around ``color`` (real photographs vary in every channel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(rng.normal(color, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def make_devkit(root, domain="aircraft", offset=10001):
    """A tiny decathlon-1.0 folder: annotations/<domain>_{train,val}.json, <domain>_test_stripped.json, JPEGs."""
    cats = [{"id": offset + k, "name": f"class{k}"} for k in range(3)]
    for split, n in (("train", 6), ("val", 3), ("test", 2)):
        images, anns = [], []
        for i in range(n):
            file_name = f"data/{domain}/{split}/{i:07d}.jpg"
            _jpeg(root / file_name, color=(40 * i, 100, 50))
            image_id = offset * 10 + (0 if split == "train" else 100 if split == "val" else 200) + i
            images.append({"id": image_id, "file_name": file_name, "width": 80, "height": 72})
            anns.append({"id": image_id, "image_id": image_id, "category_id": offset + i % 3})
        doc = {"images": images, "categories": cats}
        if split != "test":
            doc["annotations"] = anns
        name = f"{domain}_test_stripped.json" if split == "test" else f"{domain}_{split}.json"
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / name).write_text(json.dumps(doc))


def test_decathlon_devkit_labels_and_splits(tmp_path):
    make_devkit(tmp_path)
    train = DecathlonDataset(tmp_path, "aircraft", "train")
    assert len(train) == 6 and train.num_classes == 3
    assert [label for _, label in train.samples] == [0, 1, 2, 0, 1, 2]  # category_id − min id
    assert len(DecathlonDataset(tmp_path, "aircraft", "val")) == 3
    test = DecathlonDataset(tmp_path, "aircraft", "test")
    assert [label for _, label in test.samples] == [-1, -1]
    image, label = train[1]
    assert image.size == (80, 72) and label == 1


def test_decathlon_transforms_follow_the_protocol(tmp_path):
    make_devkit(tmp_path)
    mean, std = channel_stats(DecathlonDataset(tmp_path, "aircraft", "train"))
    assert len(mean) == 3 and all(s >= 0 for s in std)
    ds = DecathlonDataset(tmp_path, "aircraft", "train", decathlon_transform("aircraft", True, mean, std))
    assert ds[0][0].shape == (3, 64, 64)
    image = DecathlonDataset(tmp_path, "aircraft", "val")[0][0]
    assert decathlon_transform("aircraft", False, mean, std)(image).shape == (3, 64, 64)
    assert decathlon_transform("svhn", True, mean, std)(image).shape == (3, 72, 72)  # no crop, no flip
    assert decathlon_transform("svhn", False, mean, std)(image).shape == (3, 72, 72)
    assert decathlon_transform("aircraft", False, mean, std, crops=10)(image).shape == (10, 3, 64, 64)
    assert decathlon_transform("gtsrb", False, mean, std, crops=5)(image).shape == (5, 3, 64, 64)


def test_decathlon_missing_or_malformed(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no Visual Decathlon folder.*robots.ox.ac.uk/~vgg/decathlon"):
        DecathlonDataset(tmp_path / "nowhere", "aircraft")
    make_devkit(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"missing annotations .*dtd_train.json.*decathlon-1.0-devkit"):
        DecathlonDataset(tmp_path, "dtd")
    (tmp_path / "annotations" / "aircraft_val.json").write_text("{not json")
    with pytest.raises(DatasetNotFoundError, match="malformed annotations"):
        DecathlonDataset(tmp_path, "aircraft", "val")
    (tmp_path / "data" / "aircraft" / "train" / "0000005.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing image .*0000005.jpg.*decathlon-1.0-data"):
        DecathlonDataset(tmp_path, "aircraft", "train")
    with pytest.raises(ValueError, match="unknown Decathlon domain 'mnist'"):
        DecathlonDataset(tmp_path, "mnist")


# -- real formats: ImageFolder (ImageNet-to-Sketch) -----------------------------------------------------
def test_imagenet_to_sketch_from_image_folders(tmp_path):
    for split, n in (("train", 10), ("test", 3)):
        for c in ("ant", "bee"):
            for i in range(n):
                _jpeg(tmp_path / "sketches" / split / c / f"{i}.jpg", size=(300, 260))
    domains = imagenet_to_sketch(tmp_path, ["sketches"])
    d = domains["sketches"]
    assert d.num_classes == 2 and len(d.train) == 18 and len(d.val) == 2 and len(d.test) == 6
    x, y = d.train[0]
    assert x.shape == (3, 224, 224) and y in (0, 1)
    assert d.test[0][0].shape == (10, 3, 224, 224) and d.test_crops == 10
    with pytest.raises(DatasetNotFoundError, match=r"'cubs': missing .*cubs/train.*<root>/<domain>/\{train,test\}"):
        imagenet_to_sketch(tmp_path, ["cubs"])


# -- real formats: torchvision's own files ----------------------------------------------------------------
def test_torchvision_dtd_files(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    lines = {"train1": [], "val1": [], "test1": []}
    for cls in ("banded", "dotted"):
        for i in range(6):
            _jpeg(base / "images" / cls / f"{cls}_{i:04d}.jpg", size=(90, 80))
            lines[["train1", "train1", "train1", "train1", "val1", "test1"][i]].append(f"{cls}/{cls}_{i:04d}.jpg")
    (base / "labels").mkdir()
    for name, rows in lines.items():
        (base / "labels" / f"{name}.txt").write_text("\n".join(rows) + "\n")
    d = torchvision_decathlon(tmp_path, ["dtd"], download=False)["dtd"]
    assert (len(d.train), len(d.val), len(d.test)) == (8, 2, 2)
    x, y = d.train[5]
    assert x.shape == (3, 64, 64) and y == 1
    assert d.test[0][0].shape == (10, 3, 64, 64)  # DTD is flipped in training, so 10-crop testing


def test_torchvision_gtsrb_files(tmp_path):
    base = tmp_path / "gtsrb"
    for c in range(3):
        for i in range(5):
            _jpeg_ppm = base / "GTSRB" / "Training" / f"{c:05d}" / f"{i:05d}_00000.ppm"
            _jpeg_ppm.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 44), (10 * c, 80, 90)).save(_jpeg_ppm)
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    with open(base / "GT-final_test.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"])
        for i in range(4):
            Image.new("RGB", (40, 44)).save(test_dir / f"{i:05d}.ppm")
            w.writerow([f"{i:05d}.ppm", 40, 44, 0, 0, 40, 44, i % 3])
    d = torchvision_decathlon(tmp_path, ["gtsrb"], download=False)["gtsrb"]
    assert len(d.train) + len(d.val) == 15 and len(d.test) == 4 and d.num_classes == 43
    assert [d.test[i][1] for i in range(4)] == [0, 1, 2, 0]
    assert d.train[0][0].shape == (3, 72, 72)  # no flip → the whole 72 px image
    assert d.test[0][0].shape == (5, 3, 64, 64)


def test_torchvision_dataset_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dtd: Dataset not found.*download=True"):
        torchvision_decathlon(tmp_path, ["dtd"], download=False)
    with pytest.raises(ValueError, match="unknown preset domain 'mnist'"):
        torchvision_decathlon(tmp_path, ["mnist"], download=False)


# -- the resumable loader for real datasets ---------------------------------------------------------------
class _Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


def test_dataset_loader_resumes_the_same_order_and_shards_global_batches():
    from mdlprune.data.real.loaders import DatasetLoader

    loader = DatasetLoader(_Numbers(), 4, shuffle=True, seed=3, drop_last=True)
    assert len(loader) == 5
    first = [y.tolist() for _, y in loader]
    assert sorted(sum(first, [])) == list(range(20))
    state = loader.state_dict()
    second = [y.tolist() for _, y in loader]
    assert second != first
    loader.load_state_dict(state)
    assert [y.tolist() for _, y in loader] == second  # a checkpoint between epochs continues with epoch 2
    loader.load_state_dict({**state, "epoch_start": loader.state_dict()["epoch_start"]})
    assert [y.tolist() for _, y in loader.iterate(start=3, resume=True)] == second[3:]
    # two ranks see disjoint halves of the same global batches
    parts = []
    for rank in (0, 1):
        shard = DatasetLoader(_Numbers(), 4, shuffle=True, seed=3, drop_last=True, rank=rank, world_size=2)
        parts.append([y.tolist() for _, y in shard])
    for a, b, full in zip(parts[0], parts[1], first):
        assert sorted(a + b) == sorted(full) and len(a) == len(b) == 2
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        list(DatasetLoader(_Numbers(), 4, shuffle=False, world_size=3))


def test_creating_an_epoch_iterator_draws_nothing(bench):
    """The trainer creates every domain's iterator at the start of a round; a checkpoint taken before a domain's
    turn must find its generator untouched."""
    loader = bench["digits"].loader("train", 5, seed=1)
    before = loader.state_dict()
    it = loader.iterate()
    assert torch.equal(loader.state_dict()["generator"], before["generator"])
    next(it)
    assert not torch.equal(loader.state_dict()["generator"], before["generator"])


def test_the_documented_table_is_the_benchmark():
    """The table in mdlprune.data.mini.domains' docstring (what users read) states every domain's classes,
    images per class and split sizes: the generator must make exactly that."""
    from mdlprune.data.mini import domains
    from mdlprune.data.mini.benchmark import DOMAINS

    rows = {}
    for line in domains.__doc__.splitlines():
        m = re.match(r"``(\w+)``\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", line)
        if m:
            rows[m.group(1)] = tuple(int(v) for v in m.groups()[1:])
    assert set(rows) == set(DOMAINS), "one row per domain"
    for name, (classes, per_class, train, val, test) in rows.items():
        spec = DOMAINS[name]
        assert (spec.num_classes, spec.sizes["train"], spec.sizes["val"], spec.sizes["test"]) == (classes, train, val, test), name
        assert train == classes * per_class, f"{name}: {train} training images are not {per_class} per class"
    bench = mini_decathlon(size="default", root="/nonexistent")  # sizes only; nothing is generated
    assert [d.sizes["train"] for d in bench] == [rows[n][2] for n in bench.names]


def test_a_printed_benchmark_shows_no_machine_layout(tmp_path, monkeypatch):
    from mdlprune.data.base import shown_path as _shown

    (tmp_path / "repo" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "notebooks")  # where a notebook runs
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _shown(tmp_path / "repo" / "notebooks" / "cache") == "cache"
    assert _shown(tmp_path / "repo" / "data" / "cache" / "mini") == "../data/cache/mini"
    assert _shown(tmp_path / "home" / ".cache" / "mini") == "~/.cache/mini"
    assert _shown(Path("/elsewhere/mini")) == "/elsewhere/mini"
