"""The task picker: a table of needs and the answers a practitioner would give, then the CLI."""

from __future__ import annotations

import argparse
import io

import pytest

from unetseg.cli import add_pick_arguments as add_arguments
from unetseg.cli import main
from unetseg.cli import run_pick as run
from unetseg.picker import Needs, recommend

# (output, content, domain, images, budget, image size) -> task, architecture, covered
CASES = [
    pytest.param(("labels", "stuff", "medical", 300, "none", 512),
                 "semantic", "U-Net", True, id="small medical labels"),
    pytest.param(("labels", "things", "medical", 50_000, "none", 512),
                 "semantic", "U-Net", True, id="large medical keeps fine boundaries"),
    pytest.param(("labels", "stuff", "documents", 4000, "none", 2000),
                 "semantic", "U-Net", True, id="documents"),
    pytest.param(("labels", "things", "industrial", 150, "tight", 640),
                 "semantic", "U-Net", True, id="industrial defects on an edge device"),
    pytest.param(("labels", "both", "driving", 5000, "none", 1024),
                 "semantic", "DeepLabV3+", False, id="driving 5k"),
    pytest.param(("labels", "stuff", "satellite", 8000, "moderate", 512),
                 "semantic", "DeepLabV3+", False, id="satellite 8k"),
    pytest.param(("labels", "stuff", "satellite", 800, "none", 10_000),
                 "semantic", "U-Net", True, id="satellite huge images small data"),
    pytest.param(("labels", "both", "driving", 1999, "moderate", 960),
                 "semantic", "U-Net", True, id="driving just under small data"),
    pytest.param(("labels", "both", "driving", 2000, "moderate", 960),
                 "semantic", "DeepLabV3+", False, id="driving at small data"),
    pytest.param(("labels", "both", "other", 50_000, "moderate", 512),
                 "semantic", "SegFormer", False, id="50k other moderate budget"),
    pytest.param(("labels", "both", "driving", 10_000, "none", 2048),
                 "semantic", "SegFormer", False, id="driving at large data"),
    pytest.param(("labels", "things", "other", 50_000, "tight", 512),
                 "semantic", "U-Net", True, id="tight budget large data"),
    pytest.param(("labels", "things", "other", 4000, "none", 512),
                 "semantic", "U-Net", True, id="moderate data other"),
    pytest.param(("objects", "things", "other", 10_000, "none", 800),
                 "instance", "Mask R-CNN", False, id="objects of things"),
    pytest.param(("objects", "things", "medical", 200, "tight", 512),
                 "instance", "Mask R-CNN", False, id="cells to count"),
    pytest.param(("objects", "stuff", "satellite", 300, "none", 512),
                 "semantic", "U-Net", True, id="objects of stuff are labels"),
    pytest.param(("both", "stuff", "driving", 5000, "none", 512),
                 "semantic", "DeepLabV3+", False, id="both of stuff is labels"),
    pytest.param(("objects", "both", "driving", 20_000, "none", 2048),
                 "panoptic", "Mask2Former", False, id="objects among things and stuff"),
    pytest.param(("both", "both", "driving", 20_000, "none", 2048),
                 "panoptic", "Mask2Former", False, id="both things and stuff"),
    pytest.param(("both", "things", "other", 500, "moderate", 512),
                 "panoptic", "Mask2Former", False, id="both of things"),
]


@pytest.mark.parametrize("needs,task,architecture,covered", CASES)
def test_the_rule_table(needs, task, architecture, covered):
    answer = recommend(Needs(*needs))
    assert (answer.task, answer.architecture, answer.covered) == (task, architecture, covered)
    assert len(answer.reasons) >= 2 and all(answer.reasons)
    assert answer.next_step.startswith("unetseg train") == covered


def test_reasons_say_why_the_task_then_why_the_architecture():
    answer = recommend(Needs("objects", "stuff", "other", 300, "none", 512))
    assert "stuff has no separate instances" in answer.reasons[0]
    assert "300 labelled images (< 2000)" in answer.reasons[1]


def test_large_images_get_a_tiling_reason_and_small_ones_none():
    covered = recommend(Needs("labels", "stuff", "satellite", 800, "none", 10_000))
    assert any("unetseg predict --tile 256" in reason for reason in covered.reasons)
    other = recommend(Needs("both", "both", "driving", 20_000, "none", 2048))
    assert any("tile them" in reason and "downscal" in reason for reason in other.reasons)
    small = recommend(Needs("labels", "stuff", "satellite", 800, "none", 1024))
    assert not any("tile" in reason for reason in small.reasons)


def test_a_tight_budget_exports_a_small_u_net():
    answer = recommend(Needs("labels", "things", "other", 50_000, "tight", 512))
    assert any("ONNX" in reason and "--base" in reason for reason in answer.reasons)
    assert "--base 16" in answer.next_step and "unetseg export" in answer.next_step
    heavy = recommend(Needs("objects", "things", "other", 500, "tight", 512))
    assert any("smallest backbone" in reason for reason in heavy.reasons)


def test_medical_answers_point_3d_volumes_elsewhere():
    medical = recommend(Needs("labels", "stuff", "medical", 300, "none", 512))
    assert any("MONAI or nnU-Net" in reason for reason in medical.reasons)
    other = recommend(Needs("labels", "stuff", "other", 300, "none", 512))
    assert not any("MONAI" in reason for reason in other.reasons)


@pytest.mark.parametrize("image_size,crop", [(10_000, 512), (512, 512), (300, 288), (40, 32),
                                             (10, 16)])
def test_the_training_crop_fits_the_images_and_the_u_net(image_size, crop):
    answer = recommend(Needs("labels", "stuff", "other", 300, "none", image_size))
    assert f"--size {crop} " in answer.next_step


@pytest.mark.parametrize("needs,library", [
    (("labels", "both", "driving", 5000, "none", 512), "segmentation_models_pytorch"),
    (("labels", "both", "other", 50_000, "none", 512), "SegformerForSemanticSegmentation"),
    (("objects", "things", "other", 500, "none", 512), "torchvision"),
    (("both", "both", "other", 500, "none", 512), "Mask2FormerForUniversalSegmentation"),
])
def test_uncovered_answers_name_the_library_to_use(needs, library):
    answer = recommend(Needs(*needs))
    assert library in answer.next_step
    # unetseg's inspector still scores semantic masks from another library, not instances.
    assert ("unetseg inspect --pred" in answer.next_step) == (answer.task == "semantic")


@pytest.mark.parametrize("field,value,message", [
    ("output", "pixels", "output must be one of labels, objects, both; found 'pixels'"),
    ("content", "blobs", "content must be one of things, stuff, both; found 'blobs'"),
    ("domain", "space", ("domain must be one of medical, driving, satellite, documents, "
                         "industrial, other; found 'space'")),
    ("budget", "low", "budget must be one of tight, moderate, none; found 'low'"),
    ("images", 0, "images must be a whole number >= 1; found 0"),
    ("images", True, "images must be a whole number >= 1; found True"),
    ("image_size", "512", "image_size must be a whole number >= 1; found '512'"),
])
def test_needs_are_validated_naming_the_field(field, value, message):
    values = {"output": "labels", "content": "stuff", "domain": "other", "images": 10,
              "budget": "none", "image_size": 256}
    values[field] = value
    with pytest.raises(ValueError, match=f"^{message}$"):
        Needs(**values)


# --- command line ---------------------------------------------------------------------------

def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


ALL_FLAGS = ("--output", "labels", "--content", "stuff", "--domain", "medical", "--images",
             "300", "--budget", "none", "--image-size", "512")


def test_all_flags_given_prints_the_answer_without_asking():
    def never(prompt: str) -> str:
        raise AssertionError(f"asked {prompt!r} though every flag was given")

    out = io.StringIO()
    assert run(parse(*ALL_FLAGS), input_fn=never, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["task:          semantic segmentation",
                         "architecture:  U-Net (alternatives: U-Net with a pretrained encoder)",
                         "in unetseg:    yes", "why:"]
    assert lines[4] == "  - one label per pixel is semantic segmentation"
    assert lines[-1].startswith("next step:     unetseg train --data PATH --size 512 ")


def test_flags_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse("--images", "0")
    assert "expected a whole number >= 1, found '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--output", "pixels")
    assert parse("--images", "5,000").images == 5000


def test_missing_answers_are_asked_and_bad_ones_asked_again():
    answers = iter(["pixels", "objects", "things", "other", "lots", "12,000", "none", "800"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    out = io.StringIO()
    assert run(parse(), input_fn=ask, out=out) == 0
    assert [p.split("?")[0] for p in prompts] == [
        "Do you need one label per pixel, separate objects, or both",
        "Do you need one label per pixel, separate objects, or both",  # "pixels" asked again
        "Are the targets countable things, amorphous stuff, or both", "Which domain",
        "How many labelled images do you have",
        "How many labelled images do you have",                      # "lots" asked again
        "Latency or memory budget at prediction time", "Typical image size (long side, pixels)"]
    text = out.getvalue()
    assert "please answer one of labels, objects, both (found 'pixels')" in text
    assert "please answer a whole number >= 1 (found 'lots')" in text
    assert "architecture:  Mask R-CNN" in text


def test_only_the_missing_flags_are_asked():
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "2048"

    out = io.StringIO()
    args = parse(*ALL_FLAGS[:-2])                                    # all but --image-size
    assert run(args, input_fn=ask, out=out) == 0
    assert prompts == ["Typical image size (long side, pixels)? "]
    assert "images of 2048 px are large" in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_is_asked_through_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: "satellite")
    out = io.StringIO()
    args = parse(*ALL_FLAGS[:4], *ALL_FLAGS[6:])                     # all but --domain
    assert run(args, out=out) == 0
    assert "architecture:  U-Net (alternatives: DeepLabV3+)" in out.getvalue()


def test_input_ending_early_stops_with_status_2(capsys):
    def ended(prompt: str) -> str:
        raise EOFError

    assert run(parse(*ALL_FLAGS[:-2]), input_fn=ended, out=io.StringIO()) == 2
    assert "input ended before an answer for --image-size" in capsys.readouterr().err


def test_missing_flags_without_a_terminal_are_named(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    def never(prompt: str) -> str:
        raise AssertionError("asked without a terminal")

    monkeypatch.setattr("builtins.input", never)
    out = io.StringIO()
    assert run(parse("--output", "labels", "--budget", "none"), out=out) == 2
    err = capsys.readouterr().err
    assert "give --content, --domain, --images, --image-size" in err
    assert out.getvalue() == ""


def test_unetseg_pick_is_wired_to_the_picker(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["pick", "--output", "labels"]) == 2
    assert "give --content, --domain, --images, --budget, --image-size" in \
        capsys.readouterr().err
    assert main(["pick", *ALL_FLAGS]) == 0
    assert "in unetseg:    yes" in capsys.readouterr().out
