"""Image grids: every image on its own axis, frames that say right or wrong."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.image_grids import (
    CORRECT,
    QUERY,
    WRONG,
    ImageGridError,
    first_image_per_product,
    image_grid_figure,
    retrieval_grid_figure,
)


def images(n: int, size: int = 8) -> np.ndarray:
    """``n`` flat images, image ``i`` filled with the value ``10 * i``."""
    return np.repeat(
        np.arange(n, dtype=np.uint8)[:, None, None, None] * 10, size**2 * 3
    ).reshape(n, size, size, 3)


def frame_colour(ax) -> tuple[float, ...] | None:
    spine = ax.spines["left"]
    return tuple(spine.get_edgecolor()) if spine.get_visible() else None


def shown(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


def test_image_grid_puts_each_image_on_its_axis_in_rows():
    fig = image_grid_figure(
        images(5), ncols=3, titles=list("abcde"), frames=[None, "red", None, None, None]
    )
    axes = fig.axes
    assert len(axes) == 6  # two rows of three, the last cell empty
    drawn = [ax for ax in axes if ax.get_images()]
    assert len(drawn) == 5
    assert [int(shown(ax)[0, 0, 0]) for ax in drawn] == [0, 10, 20, 30, 40]
    assert [ax.get_title() for ax in drawn] == list("abcde")
    assert frame_colour(drawn[0]) is None
    assert frame_colour(drawn[1]) == to_rgba("red")
    assert not axes[5].axison


def test_image_grid_draws_boxes_where_given():
    fig = image_grid_figure(images(3), boxes=[None, (1, 2, 5, 7), None])
    patches = [[p for p in ax.patches if isinstance(p, Rectangle)] for ax in fig.axes]
    assert [len(p) for p in patches] == [0, 1, 0]
    box = patches[1][0]
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (
        0.5,
        1.5,
        4,
        5,
    )
    fig = image_grid_figure(images(2), boxes=np.array([[0, 0, 4, 4], [1, 1, 3, 3]]))
    assert all(len(ax.patches) == 1 for ax in fig.axes)


def test_image_grid_row_labels_name_the_rows():
    fig = image_grid_figure(images(4), ncols=2, row_labels=["photo", "crop"])
    assert [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()] == ["photo", "crop"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": np.zeros((2, 8, 8, 3), np.float32)}, "must be a uint8 array"),
        ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, "images is empty"),
        ({"titles": ["a"]}, "titles must have one entry per image \\(2\\)"),
        ({"boxes": np.zeros((2, 3))}, "boxes must have shape \\(2, 4\\)"),
        ({"boxes": [None, (1, 2)]}, "each box must be x0, y0, x1, y1"),
        ({"row_labels": ["a", "b"]}, "one label per row \\(1\\)"),
        ({"ncols": 0}, "ncols must be a positive integer"),
    ],
)
def test_image_grid_errors_name_the_argument(kwargs, message):
    arguments = {"images": images(2)} | kwargs
    pixels = arguments.pop("images")
    with pytest.raises(ImageGridError, match=message):
        image_grid_figure(pixels, **arguments)


def test_retrieval_grid_frames_results_green_when_correct_red_when_not():
    queries = images(2)
    results = np.stack([images(3), images(3)])
    correct = np.array([[True, False, False], [False, False, True]])
    fig = retrieval_grid_figure(
        queries,
        results,
        correct,
        query_titles=["q0", "q1"],
        result_titles=[["a", "b", "c"], ["d", "e", "f"]],
        query_boxes=np.array([[0, 0, 4, 4], [2, 2, 6, 6]]),
    )
    grid = np.array(fig.axes).reshape(2, 5)  # query, gap, three results
    for row in range(2):
        assert frame_colour(grid[row, 0]) == to_rgba(QUERY)
        assert len(grid[row, 0].patches) == 1
        assert not grid[row, 1].axison
        colours = [frame_colour(ax) for ax in grid[row, 2:]]
        expected = [to_rgba(CORRECT if c else WRONG) for c in correct[row]]
        assert colours == expected
    assert grid[1, 4].get_title() == "f"
    assert grid[0, 0].get_title() == "q0"


@pytest.mark.parametrize(
    ("results", "correct", "message"),
    [
        (np.zeros((2, 3, 4, 4, 3), np.uint8), np.zeros((2, 3), bool), "queries' H, W"),
        (np.zeros((2, 3, 8, 8, 3), np.uint8), np.zeros((2, 2), bool), "one flag per"),
        (np.zeros((2, 3, 8, 8, 3), np.uint8), np.zeros((2, 3), int), "boolean array"),
        (
            np.zeros((2, 8, 8, 3), np.uint8),
            np.zeros((2, 3), bool),
            "\\(n, k, H, W, 3\\)",
        ),
    ],
)
def test_retrieval_grid_errors(results, correct, message):
    with pytest.raises(ImageGridError, match=message):
        retrieval_grid_figure(images(2), results, correct)


def test_retrieval_grid_checks_titles_and_boxes():
    results = np.stack([images(2), images(2)])
    correct = np.ones((2, 2), bool)
    with pytest.raises(ImageGridError, match="2 rows of 2 titles"):
        retrieval_grid_figure(images(2), results, correct, result_titles=[["a"], ["b"]])
    with pytest.raises(ImageGridError, match="query_boxes must have shape"):
        retrieval_grid_figure(images(2), results, correct, query_boxes=np.zeros((1, 4)))


def test_first_image_per_product_picks_the_first_and_blanks_empty_slots():
    pixels = images(4)
    owners = np.array([7, 3, 7, 3])
    out = first_image_per_product(pixels, owners, np.array([[3, 7], [-1, 3]]))
    assert out.shape == (2, 2, 8, 8, 3)
    assert [int(v) for v in out[..., 0, 0, 0].ravel()] == [10, 0, 255, 10]


def test_first_image_per_product_errors():
    with pytest.raises(ImageGridError, match="no image \\(first: 5\\)"):
        first_image_per_product(images(2), np.array([1, 2]), np.array([1, 5]))
    with pytest.raises(ImageGridError, match="one id per image \\(2\\)"):
        first_image_per_product(images(2), np.array([1]), np.array([1]))
    assert issubclass(ImageGridError, MlsdError)
