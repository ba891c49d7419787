"""The task picker: a table of needs and the answers a practitioner would give."""

from __future__ import annotations

import argparse
import io

import pytest

from unetseg.cli import main
from unetseg.picker import Needs, add_arguments, recommend, run

# (output, content, domain, images, budget, image size) -> task, architecture, covered
CASES = [
    (("labels", "stuff", "medical", 300, "none", 512), "semantic", "U-Net", True),
    (("labels", "things", "medical", 5000, "moderate", 512), "semantic", "U-Net", True),
    (("labels", "both", "driving", 5000, "none", 1024), "semantic", "DeepLabV3+", False),
    (("labels", "stuff", "satellite", 800, "none", 10000), "semantic", "U-Net", True),
    (("labels", "stuff", "satellite", 8000, "moderate", 512), "semantic", "DeepLabV3+", False),
    (("labels", "both", "other", 50000, "moderate", 512), "semantic", "SegFormer", False),
    (("labels", "both", "driving", 50000, "none", 2048), "semantic", "SegFormer", False),
    (("labels", "things", "other", 50000, "tight", 512), "semantic", "U-Net", True),
    (("labels", "stuff", "documents", 4000, "none", 2000), "semantic", "U-Net", True),
    (("labels", "things", "industrial", 150, "tight", 640), "semantic", "U-Net", True),
    (("labels", "things", "other", 4000, "none", 512), "semantic", "U-Net", True),
    (("objects", "things", "other", 10000, "none", 800), "instance", "Mask R-CNN", False),
    (("objects", "things", "medical", 200, "none", 512), "instance", "Mask R-CNN", False),
    (("objects", "stuff", "satellite", 300, "none", 512), "semantic", "U-Net", True),
    (("both", "both", "driving", 20000, "none", 2048), "panoptic", "Mask2Former", False),
    (("both", "things", "other", 500, "moderate", 512), "panoptic", "Mask2Former", False),
]


@pytest.mark.parametrize("needs,task,architecture,covered", CASES)
def test_the_rule_table(needs, task, architecture, covered):
    answer = recommend(Needs(*needs))
    assert (answer.task, answer.architecture, answer.covered) == (task, architecture, covered)
    assert len(answer.reasons) >= 2 and all(answer.reasons)
    assert ("unetseg train" in answer.next_step) == covered


def test_large_images_get_a_tiling_reason():
    answer = recommend(Needs("labels", "stuff", "satellite", 800, "none", 10000))
    assert any("--tile" in reason for reason in answer.reasons)
    small = recommend(Needs("labels", "stuff", "satellite", 800, "none", 512))
    assert not any("tile" in reason for reason in small.reasons)


@pytest.mark.parametrize("field,value,message", [
    ("output", "pixels", "output must be one of labels, objects, both; found 'pixels'"),
    ("domain", "space", "domain must be one of medical, driving"),
    ("images", 0, "images must be a positive whole number; found 0"),
])
def test_needs_are_validated_naming_the_field(field, value, message):
    values = dict(output="labels", content="stuff", domain="other", images=10, budget="none",
                  image_size=256)
    values[field] = value
    with pytest.raises(ValueError, match=message):
        Needs(**values)


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


def test_all_flags_given_prints_the_answer():
    out = io.StringIO()
    args = parse("--output", "labels", "--content", "stuff", "--domain", "medical",
                 "--images", "300", "--budget", "none", "--image-size", "512")
    assert run(args, out=out) == 0
    text = out.getvalue()
    assert "semantic segmentation" in text and "U-Net" in text and "in unetseg:    yes" in text


def test_missing_answers_are_asked_and_bad_ones_asked_again():
    answers = iter(["pixels", "objects", "things", "other", "lots", "12000", "none", "800"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    out = io.StringIO()
    assert run(parse(), input_fn=ask, out=out) == 0
    assert len(prompts) == 8                           # two answers were asked again
    assert "please answer one of labels, objects, both" in out.getvalue()
    assert "please answer a number" in out.getvalue()
    assert "Mask R-CNN" in out.getvalue()


def test_missing_flags_without_a_terminal_are_named(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["pick", "--output", "labels"]) == 2
    err = capsys.readouterr().err
    assert "--content" in err and "--image-size" in err and "--output" not in err
