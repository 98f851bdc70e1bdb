from PIL import Image

from library.training.loss_chart import draw_loss_chart, moving_average


def test_moving_average():
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]


def test_chart_is_a_png_and_skips_nan(tmp_path):
    path = draw_loss_chart([0.5, float("nan"), 0.3, 0.2], tmp_path / "loss.png")
    assert Image.open(path).size == (800, 400)
    assert draw_loss_chart([float("nan")], tmp_path / "none.png") is None
