"""The Stanford Online Products loader: the archive's layout, square images by crop
or pad, and errors that name the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.datasets.stanford_online_products import (
    CATEGORIES,
    HEADER,
    SOPFileNotFound,
    SOPFormatError,
    read_sop,
    write_sop_sample,
)
from mlsd_lib.errors import MlsdError

HEADER_LINE = " ".join(HEADER)


def _write_list(root: Path, name: str, lines: list[str]) -> None:
    (root / name).write_text("\n".join([HEADER_LINE, *lines]) + "\n")


def _image(root: Path, relative: str, pixels: np.ndarray) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_the_sample_reads_back_in_the_archives_layout(tmp_path: Path) -> None:
    root = write_sop_sample(tmp_path, n_products=8, images_per_product=3, seed=1)
    lines = (root / "Ebay_train.txt").read_text().splitlines()
    assert lines[0] == HEADER_LINE
    image_id, class_id, super_id, path = lines[1].split()
    assert (image_id, class_id, super_id) == ("1", "1", "1")
    assert path.startswith("bicycle_final/") and path.endswith("_0.JPG")
    assert len((root / "Ebay_info.txt").read_text().splitlines()) == 1 + 8 * 3

    train, test = read_sop(root, "train"), read_sop(root, "test", image_size=32)
    assert isinstance(train, ImageSet)
    assert train.images.shape == (12, 64, 64, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (12, 32, 32, 3)
    assert train.product_ids.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert test.product_ids.tolist() == [5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8]
    # Categories as the folders say: product p is in category (p - 1) % 12 + 1.
    assert test.category_ids.tolist() == np.repeat([5, 6, 7, 8], 3).tolist()
    folder = (root / "Ebay_test.txt").read_text().splitlines()[1].split()[3]
    assert folder.split("/")[0] == f"{CATEGORIES[4]}_final"
    assert test.image_ids.tolist() == list(range(1, 13))  # restart at 1 per file
    # Photos of one product differ (moved, rescaled), but not wholly.
    a, b = train.images[0].astype(int), train.images[1].astype(int)
    assert 0 < np.abs(a - b).mean() < 60


def test_the_sample_is_seeded(tmp_path: Path) -> None:
    one = write_sop_sample(tmp_path / "a", seed=3)
    two = write_sop_sample(tmp_path / "b", seed=3)
    other = write_sop_sample(tmp_path / "c", seed=4)
    files = sorted(p.relative_to(one) for p in one.rglob("*.JPG"))
    assert files == sorted(p.relative_to(two) for p in two.rglob("*.JPG"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    np.testing.assert_array_equal(
        read_sop(one, "test").images, read_sop(two, "test").images
    )
    assert not np.array_equal(
        read_sop(one, "test").images, read_sop(other, "test").images
    )


def _halves(tmp_path: Path) -> Path:
    """A 100 x 50 photo, red left half and blue right half; a grey one."""
    wide = np.zeros((50, 100, 3), dtype=np.uint8)
    wide[:, :50] = (255, 0, 0)
    wide[:, 50:] = (0, 0, 255)
    _image(tmp_path, "sofa_final/1_0.png", wide)
    _image(tmp_path, "sofa_final/1_1.png", np.full((40, 40), 90, dtype=np.uint8))
    _write_list(
        tmp_path,
        "Ebay_train.txt",
        ["1 1 9 sofa_final/1_0.png", "2 1 9 sofa_final/1_1.png"],
    )
    return tmp_path


def test_centre_crop_keeps_the_middle_square_and_pad_keeps_the_whole_photo(
    tmp_path: Path,
) -> None:
    root = _halves(tmp_path)
    crop = read_sop(root, "train", image_size=16)
    pad = read_sop(root, "train", image_size=16, fit="pad")
    # Crop: the centred 50 x 50 square, half red, half blue, no white.
    square = crop.images[0].astype(int)
    assert (square[:, :7] == (255, 0, 0)).all()
    assert (square[:, 9:] == (0, 0, 255)).all()
    assert not (square == 255).all(axis=2).any()
    # Pad: the whole photo (16 x 8) between two white bands of 4 rows.
    bands = pad.images[0]
    assert (bands[:4] == 255).all() and (bands[12:] == 255).all()
    assert (bands[5:11, :7] == (255, 0, 0)).all()
    assert (bands[5:11, 9:] == (0, 0, 255)).all()
    # A grayscale photo becomes three equal channels, either way.
    for images in (crop, pad):
        assert (images.images[1] == 90).all()
    assert crop.category_ids.tolist() == [9, 9]


def test_limit_reads_the_first_lines(tmp_path: Path) -> None:
    root = write_sop_sample(tmp_path, n_products=4, images_per_product=3)
    full = read_sop(root, "test")
    first = read_sop(root, "test", limit=4)
    assert first.image_ids.tolist() == full.image_ids[:4].tolist()
    np.testing.assert_array_equal(first.images, full.images[:4])
    assert len(read_sop(root, "test", limit=100)) == len(full)


def test_jpeg_colours_survive_the_round_trip(tmp_path: Path) -> None:
    _image(
        tmp_path, "mug_final/5_0.JPG", np.full((70, 90, 3), (30, 140, 220), np.uint8)
    )
    _write_list(tmp_path, "Ebay_test.txt", ["1 5 8 mug_final/5_0.JPG"])
    image = read_sop(tmp_path, "test", image_size=8).images[0].astype(int)
    assert np.abs(image - np.array([30, 140, 220])).max() <= 3


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["1 1 1"], r"Ebay_train.txt line 2: expected 4 space-separated fields"),
        (
            ["1 1 1 a/x.JPG", "2 x 1 a/y.JPG"],
            r"Ebay_train.txt line 3: class_id 'x' is not a positive integer",
        ),
        (["0 1 1 a/x.JPG"], r"line 2: image_id '0' is not a positive integer"),
        (["1 1 -2 a/x.JPG"], r"line 2: super_class_id '-2' is not a positive"),
        (["1 1 1 /etc/x.JPG"], r"line 2: path '/etc/x.JPG' must be relative"),
        (["1 1 1 ../x.JPG"], r"line 2: path '../x.JPG' must be relative .*inside"),
        (
            ["1 1 1 a/x.JPG", "2 1 1 a/y.JPG", "2 2 1 a/z.JPG"],
            r"Ebay_train.txt: image_id 2 appears on lines 3 and 4; image ids must "
            r"be unique",
        ),
        (
            ["1 4 1 a/x.JPG", "2 4 3 a/y.JPG"],
            r"product \(class_id\) 4 is in category 1 on line 2 and 3 on line 3",
        ),
    ],
)
def test_bad_lines_name_the_file_and_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    _write_list(tmp_path, "Ebay_train.txt", lines)
    with pytest.raises(SOPFormatError, match=message):
        read_sop(tmp_path, "train")


def test_a_bad_header_is_reported_with_the_expected_one(tmp_path: Path) -> None:
    (tmp_path / "Ebay_test.txt").write_text("id class path\n1 1 a/x.JPG\n")
    with pytest.raises(
        SOPFormatError,
        match=r"Ebay_test.txt line 1: expected the header "
        r"'image_id class_id super_class_id path', got 'id class path'",
    ):
        read_sop(tmp_path, "test")


def test_missing_files_and_bad_splits(tmp_path: Path) -> None:
    with pytest.raises(
        SOPFileNotFound,
        match=r"Ebay_train.txt not found in .*: point root at the unpacked "
        r"Stanford_Online_Products folder",
    ) as caught:
        read_sop(tmp_path, "train")
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, MlsdError)
    with pytest.raises(
        SOPFormatError, match=r"split must be 'train' or 'test', got 'val'"
    ):
        read_sop(tmp_path, "val")


def test_missing_images_are_found_before_any_is_decoded(tmp_path: Path) -> None:
    root = write_sop_sample(tmp_path, n_products=4, images_per_product=3)
    lines = (root / "Ebay_test.txt").read_text().splitlines()
    broken = lines[1].split()[3]
    (root / broken).write_bytes(b"not a jpeg")  # line 2: undecodable
    gone = lines[3].split()[3]
    (root / gone).unlink()  # line 4: missing
    with pytest.raises(
        SOPFileNotFound,
        match=rf"1 of the 6 images listed in Ebay_test.txt are missing under .* "
        rf"\(first: line 4, '{gone}'\): unpack the whole archive",
    ):
        read_sop(root, "test")
    # Reading only the lines before the missing image reaches the broken one.
    with pytest.raises(
        SOPFormatError, match=rf"Ebay_test.txt line 2: cannot decode '{broken}'"
    ):
        read_sop(root, "test", limit=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 4}, r"image_size must be an integer from 8 to 1024"),
        ({"image_size": 64.0}, r"image_size must be an integer"),
        ({"limit": 0}, r"limit must be a positive integer or None"),
        ({"fit": "stretch"}, r"fit must be 'crop' .* or 'pad' .*got 'stretch'"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    root = write_sop_sample(tmp_path, n_products=2, images_per_product=1)
    with pytest.raises(SOPFormatError, match=message):
        read_sop(root, "train", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_products": 1}, r"n_products must be an integer >= 2"),
        ({"images_per_product": 0}, r"images_per_product must be a positive"),
        ({"train_fraction": 1.0}, r"train_fraction=1.0 leaves 4 of 4 products"),
    ],
)
def test_bad_sample_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"n_products": 4} | kwargs
    with pytest.raises(SOPFormatError, match=message):
        write_sop_sample(tmp_path, **arguments)
