"""The dataset fingerprint (`unetseg.data.fingerprint`): every figure against a count made by
hand on masks drawn for it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unetseg.data.fingerprint import EDGE_PX, Fingerprint, fingerprint
from unetseg.data.spec import DatasetSpec

H, W = 40, 50


def masks() -> list[np.ndarray]:
    """Class 1: a 4 x 4 and a 6 x 6 square (mask 0), a 3 x 10 bar (mask 1). Class 2: a line
    1 px wide and 20 long (mask 1). Mask 2 holds background only; mask 1 has 50 pixels of
    255 (ignored)."""
    first = np.zeros((H, W), np.uint8)
    first[5:9, 5:9] = 1
    first[20:26, 30:36] = 1
    second = np.zeros((H, W), np.uint8)
    second[10:13, 10:20] = 1
    second[30, 5:25] = 2
    second[0:5, 40:50] = 255
    return [first, second, np.zeros((H, W), np.uint8)]


@pytest.fixture
def pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(tmp_path / "cache"))
    found = []
    for i, mask in enumerate(masks()):
        for folder, array in (("images", np.full((H, W), 100 + i, np.uint8)), ("masks", mask)):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(array).save(tmp_path / folder / f"{i}.png")
        found.append((tmp_path / "images" / f"{i}.png", tmp_path / "masks" / f"{i}.png"))
    return found


SPEC = DatasetSpec(class_names=("background", "box", "line"))


def test_every_figure_matches_a_count_by_hand(pairs):
    assert EDGE_PX == 2
    fp = fingerprint(pairs, SPEC, (0.4,), (0.1,), 1)
    background, box, line = fp.classes
    assert (box.pixels, line.pixels) == (16 + 36 + 30, 20)
    assert background.pixels == 3 * H * W - 50 - box.pixels - line.pixels
    labelled = 3 * H * W - 50
    assert box.share == pytest.approx((16 + 36 + 30) / labelled, abs=1e-6)
    assert (background.images, box.images, line.images) == (3, 2, 1)
    assert (box.components, line.components) == (3, 1)
    # Weighted by pixels (82 in all): 5% (4.1) lies in the 16-pixel square, 50% (41) is
    # reached with the 30-pixel bar, 95% (77.9) only with the 36-pixel square.
    assert box.area == (16, 30, 36)
    # Extents 4 (16 px), 6 (36 px) and 10 (30 px): cumulative 16, 52, 82.
    assert box.extent == (4, 6, 10)
    assert line.extent == (20, 20, 20)
    # Two erosions leave nothing of the 4 x 4 square and the 3-row bar, and the 2 x 2 middle
    # of the 6 x 6 square: 78 of the 82 pixels are within 2 px of another label.
    assert box.edge_share == pytest.approx(78 / 82, abs=1e-4)
    assert line.edge_share == 1.0
    assert fp.ignored_share == pytest.approx(50 / (3 * H * W), abs=1e-6)
    assert fp.empty_share == pytest.approx(1 / 3, abs=1e-6)           # mask 2
    assert (fp.images, fp.height, fp.width, fp.channels) == (3, (H, H, H), (W, W, W), 1)
    assert fp.bit_depth == "8-bit"
    assert fp.background == 0 and [c.name for c in fp.objects] == ["box", "line"]


def test_a_speck_of_noise_does_not_pass_for_the_objects():
    """Annotation noise: 300 one-pixel specks beside one 20 x 20 object. Counted per
    component the specks are the 5th to the 95th percentile; weighted by pixels (400 against
    300) the object is the median and the top."""
    from unetseg.data.fingerprint import weighted_percentiles

    extents, areas = [1] * 300 + [20], [1] * 300 + [400]
    assert weighted_percentiles(extents, areas) == (1, 20, 20)
    assert np.percentile(extents, 50) == 1


def test_a_second_fingerprint_of_unchanged_files_reads_no_mask(pairs, monkeypatch):
    first = fingerprint(pairs, SPEC, (0.4,), (0.1,), 1)
    monkeypatch.setattr(DatasetSpec, "decode_mask", lambda *a: pytest.fail("a mask was read"))
    assert fingerprint(pairs, SPEC, (0.4,), (0.1,), 1) == first
    assert Fingerprint.from_dict(first.to_dict()) == first


def test_an_edited_mask_is_measured_again(pairs):
    before = fingerprint(pairs, SPEC, (0.4,), (0.1,), 1)
    Image.fromarray(np.ones((H, W), np.uint8)).save(pairs[2][1])       # empty mask now all box
    after = fingerprint(pairs, SPEC, (0.4,), (0.1,), 1)
    assert after.classes[1].pixels == before.classes[1].pixels + H * W
    assert after.empty_share == 0
