"""Configuration: one model config, checks on construction that name the flag, and the
command-line flags generated from the dataclasses."""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml

from unetseg.cli import build_parser, main
from unetseg.config import (
    SECTIONS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    cli_fields,
    flag_of,
    layered_settings,
    read_config_file,
)
from unetseg.model import UNet, UNetConfig
from unetseg.train import fit


def test_there_is_one_model_config_and_one_default_width():
    assert RunConfig().model.unet() == UNet().config == UNetConfig()
    assert UNetConfig().base == 32
    # A U-Net's own config is a model section: this toolkit's U-Net with those settings.
    assert RunConfig(model=UNetConfig(base=8)).model == ModelConfig(base=8)


@pytest.mark.parametrize("values,message", [
    ({"data": {"size": -64}}, "--size must be a whole number >= 1, found -64"),
    ({"data": {"batch_size": 0}}, "--batch-size must be a whole number >= 1, found 0"),
    ({"data": {"val_ratio": 1.5}}, "--val-ratio must be between 0 and 1, found 1.5"),
    ({"data": {"scale_min": 3.0}}, "--scale-min must be > 0 and <= --scale-max"),
    ({"data": {"workers": -1}}, "--workers must be a whole number >= 0"),
    ({"data": {"seed": 0, "foreground": 0.0}}, "--foreground must be between 0 and 1"),
    ({"data": {"source": "camvid"}}, "--data camvid needs --root DIR"),
    ({"data": {"root": "/data"}}, "--root cannot be used with --data synthetic"),
    ({"data": {"source": "binary", "classes": "a,b"}}, "--classes cannot be used with --data "
                                                        "binary"),
    ({"data": {"source": "folder", "train_list": "t.txt"}}, "give both --train-list and "
                                                            "--val-list"),
    ({"model": {"norm": "foo"}}, "norm must be one of"),
    ({"model": {"depth": 0}}, "depth must be a positive integer"),
    ({"train": {"epochs": 0}}, "--epochs must be a whole number >= 1, found 0"),
    ({"train": {"loss": "focal"}}, "--loss must be one of ce_dice, ce, dice, bce_dice"),
    ({"train": {"precision": "fp8"}}, "--precision must be one of"),
    ({"train": {"lr": -1.0}}, "--lr must be >= 0"),
    ({"train": {"class_weights": "1,x"}}, "--class-weights must be 'median', 'sqrt-median' or"),
    ({"train": {"loss": "dice", "class_weights": "1,2"}}, "--loss dice has none"),
])
def test_bad_values_are_refused_on_construction_naming_the_flag(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(values)


@pytest.mark.parametrize("data,message", [
    ({"source": "my_folder", "foreground": 0.3}, "--foreground cannot be used with --data "
                                                 "my_folder"),
    ({"source": "my_folder", "train_samples": 50, "val_samples": 5},
     "--train-samples, --val-samples cannot be used with --data my_folder; remove them"),
    ({"source": "isbi", "root": "/d", "train_samples": 50}, "--train-samples cannot be used"),
    ({"source": "synthetic", "foreground": 0.3}, "--foreground cannot be used with --data "
                                                 "synthetic"),
])
def test_foreground_and_train_samples_with_folder_data_are_refused_not_ignored(data, message):
    """Issue 22: they were ignored, yet written to config.yaml as if they had been used."""
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict({"data": data})
    RunConfig.from_dict({"data": {"source": "binary", "foreground": 0.3, "train_samples": 50}})


def test_yaml_values_take_their_fields_type_and_a_wrong_type_names_the_key(tmp_path):
    # YAML 1.1 reads 3e-3 (no dot) as a string: it is the number it reads as.
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 3e-3\n  epochs: '4'\ndata:\n  augment: false\n")
    config = RunConfig.from_yaml(file)
    assert (config.train.lr, config.train.epochs, config.data.augment) == (0.003, 4, False)
    for text, message in (("train:\n  lr: fast\n", r"c.yaml: train.lr must be a number, "
                                                     r"found 'fast'"),
                          ("data:\n  size: big\n", r"c.yaml: data.size must be a whole "
                                                     r"number, found 'big'"),
                          ("data:\n  augment: maybe\n", r"c.yaml: data.augment must be true "
                                                          r"or false, found 'maybe'"),
                          ("train:\n  lr: [1, 2]\n", r"c.yaml: train.lr must be a number")):
        file.write_text(text)
        with pytest.raises(ValueError, match=message):
            RunConfig.from_yaml(file)
    with pytest.raises(ValueError, match="--lr must be a number, found 'fast'"):
        TrainConfig(lr="fast")
    assert TrainConfig(lr="1e-3").lr == 0.001


def test_train_with_a_string_lr_in_the_config_file_trains_and_a_bad_one_is_refused(
        tmp_path, capsys):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 3e-3\n")
    flags = ["train", "--config", str(file), "--size", "32", "--train-samples", "16",
             "--val-samples", "4", "--base", "4", "--batch-size", "8", "--epochs", "1",
             "--precision", "fp32", "--quiet"]
    assert main([*flags, "--out", str(tmp_path / "run")]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["lr"] == 0.003
    file.write_text("train:\n  lr: fast\n")
    assert main([*flags, "--out", str(tmp_path / "other")]) == 2
    assert "train.lr must be a number, found 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_the_layers_are_plan_then_file_then_flags_and_a_given_length_replaces_the_plans():
    plan = {"train": {"time_budget": 15.0, "lr": 1e-3}, "model": {"base": 16}}
    layered = layered_settings(plan, {"model": {"base": 8}}, {"train": {"lr": 2e-3}})
    assert layered == {"train": {"time_budget": 15.0, "lr": 2e-3}, "model": {"base": 8}}
    counted = layered_settings(plan, {}, {"train": {"epochs": 3}})
    assert counted["train"] == {"lr": 1e-3, "epochs": 3}      # not 3 epochs cut at 15 minutes
    from_file = layered_settings(plan, {"train": {"max_steps": 50}}, {})
    assert from_file["train"] == {"lr": 1e-3, "max_steps": 50}


def test_a_resume_may_change_when_where_and_how_long_a_run_trains_and_nothing_else(
        tiny_run_copy, tmp_path, capsys):
    """The rules live in config, so `fit(config, resume=True)` from Python and
    `unetseg train --resume` refuse alike, each change named by its flag with both values; the
    command that started the run, repeated with --resume, a longer run and other workers, is
    accepted."""
    config, run = tiny_run_copy, tiny_run_copy.train.out
    longer = replace(config, train=replace(config.train, epochs=config.train.epochs + 1,
                                           lr=config.train.lr * 2))
    with pytest.raises(ValueError, match=r"--lr \(recorded .*\) cannot change when resuming"):
        fit(longer, resume=True)
    with pytest.raises(ValueError, match=r"--base \(recorded 8, given 16\) cannot change"):
        fit(replace(config, model=replace(config.model, base=16)), resume=True)

    assert main(["train", "--resume", run, "--base", "16"]) == 2
    assert ("--base (recorded 8, given 16) cannot change when resuming"
            in capsys.readouterr().err)
    assert main(["train", "--resume", run, "--data", "binary"]) == 2
    err = capsys.readouterr().err
    assert "--data (recorded 'synthetic', given 'binary') cannot change" in err
    assert "--source" not in err
    assert main(["train", "--resume", run, "--out", str(tmp_path / "other")]) == 2
    assert "name different runs" in capsys.readouterr().err

    started = ["--data", "synthetic", "--size", "32", "--batch-size", "8", "--train-samples",
               "96", "--val-samples", "24", "--base", "8", "--lr", "0.01", "--quiet"]
    assert main(["train", *started, "--epochs", "3", "--workers", "0", "--out", run,
                 "--resume", run]) == 0
    assert "resuming" in capsys.readouterr().out
    assert "epochs: 3" in (Path(run) / "config.yaml").read_text()
    assert len((Path(run) / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_bad_flag_fails_before_any_data_is_read(tmp_path, capsys):
    # The folder does not exist: had the data been read first, that would be the error.
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--norm", "foo",
                 "--out", str(tmp_path / "run")]) == 2
    assert "norm must be one of" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_class_names_from_a_flag_or_a_yaml_string_are_split_on_commas(tmp_path):
    assert DataConfig(source=str(tmp_path), classes="cell, membrane").classes == ("cell",
                                                                                    "membrane")
    file = tmp_path / "run.yaml"
    file.write_text("data:\n  source: folder\n  classes: cell, membrane\n")
    assert RunConfig.from_yaml(file).data.classes == ("cell", "membrane")


def test_unknown_sections_and_settings_name_the_file(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    with pytest.raises(ValueError, match=r"run.yaml: unknown train settings \['epoch'\]"):
        RunConfig.from_yaml(file)
    file.write_text(yaml.safe_dump({"optimiser": {}}))
    with pytest.raises(ValueError, match=r"run.yaml: unknown sections \['optimiser'\]"):
        RunConfig.from_yaml(file)


def test_a_config_survives_its_yaml_round_trip():
    config = RunConfig(data=DataConfig(classes=None, mean=(0.5,), std=(0.25,)),
                       train=TrainConfig(class_weights="1,2", loss="ce"))
    assert RunConfig.from_dict(yaml.safe_load(config.to_yaml())) == config


def test_every_field_with_help_is_a_train_flag_and_every_flag_is_a_field():
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest for a in train._actions if "." in a.dest}
    expected = {f"{section}.{item.name}" for section, kind in SECTIONS.items()
                for item in cli_fields(kind)}
    assert dests == expected
    flags = {s for a in train._actions for s in a.option_strings}
    assert {"--data", "--data-seed", "--no-augment", "--quiet", "--no-channels-last",
            "--base", "--norm", "--batch-size"} <= flags
    # Channels in and classes out come from the data, and normalisation from the training set.
    derived = {"model.in_channels", "model.num_classes", "data.mean", "data.std"}
    every = {f"{section}.{item.name}" for section, kind in SECTIONS.items()
             for item in fields(kind)}
    assert every - expected == derived


def test_a_flags_value_reaches_its_field(tmp_path):
    from unetseg.cli import config_from_args

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "binary", "--foreground", "0.2", "--base", "8",
                              "--no-augment", "--quiet", "--class-weights", "1,3",
                              "--out", str(tmp_path)])
    config = config_from_args(args)
    assert config.data.source == "binary" and config.data.foreground == 0.2
    assert config.model.base == 8 and config.data.augment is False
    assert config.train.progress is False and config.train.class_weights == "1,3"
    assert flag_of(DataConfig, "source") == "--data"


# --- built-in data and the retired recipes ------------------------------------------------------

def _train_config(*flags):
    from unetseg.cli import config_from_args

    return config_from_args(build_parser().parse_args(["train", *flags]))


@pytest.mark.parametrize("source", ["isbi", "camvid"])
def test_built_in_data_with_plan_none_gets_the_classic_settings_and_flags_override_them(
        tmp_path, source):
    classic = _train_config("--data", source, "--root", str(tmp_path), "--plan", "none")
    assert (classic.data.size, classic.model.base, classic.model.upsample) == (64, 32, "bilinear")
    assert (classic.train.lr, classic.train.max_steps, classic.train.class_weights) == (
        3e-3, 0, None)
    path = tmp_path / "run.yaml"
    path.write_text(f"data:\n  source: {source}\n  root: {tmp_path}\nmodel:\n  base: 8\n")
    filed = _train_config("--config", str(path), "--plan", "none", "--size", "128")
    assert (filed.data.source, filed.model.base, filed.data.size) == (source, 8, 128)


def test_a_retired_recipe_is_refused_naming_what_replaced_it(tmp_path):
    with pytest.raises(ValueError, match="--recipe isbi: the hand recipes were retired") as error:
        _train_config("--data", "isbi", "--root", str(tmp_path), "--recipe", "isbi")
    assert "--plan none" in str(error.value) and "experiments/recipes/" in str(error.value)


@pytest.mark.parametrize("name", ["isbi", "camvid"])
def test_the_retired_recipes_are_config_files_that_load_as_the_recipes_were(name):
    """experiments/recipes/ keeps the hand recipes as --config files, so the study's recipe rows
    can be trained again; they are checked like any configuration file."""
    path = Path(__file__).parents[1] / "experiments" / "recipes" / f"{name}.yaml"
    config = RunConfig.from_dict(read_config_file(path), str(path))
    assert (config.model.base, config.model.upsample, config.train.lr) == (16, "transpose", 1e-3)
    assert config.data.size == 256 and config.train.max_steps > 0
    assert config.train.class_weights == ("sqrt-median" if name == "camvid" else None)


def test_training_with_one_class_is_refused_suggesting_the_background(tmp_path, capsys):
    """`--classes membrane` on 0/255 masks reported "best validation mIoU 1.0000": one class
    is refused before any data is read, and the message says how to name the background."""
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--classes", "membrane",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--classes membrane names 1 class; segmentation needs at least 2" in err
    assert "--classes background,membrane" in err and "--loss bce_dice" in err
    assert not (tmp_path / "run").exists()


def test_yaml_numbers_in_any_form_and_booleans_for_numbers(tmp_path):
    """`lr: 1e-3` (a string to PyYAML) raised a TypeError and `base: true` was read as 1: a
    number is a number in any YAML form, and a boolean is no number."""
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 1e-3\n  time_budget: 1E+1\nmodel:\n  base: '16'\n")
    config = RunConfig.from_yaml(file)
    assert (config.train.lr, config.train.time_budget, config.model.base) == (0.001, 10.0, 16)
    file.write_text("model:\n  base: true\n")
    with pytest.raises(ValueError, match=r"c.yaml: model.base must be a whole number, found "
                                         r"True"):
        RunConfig.from_yaml(file)


def test_an_edited_config_yaml_with_a_string_number_resumes(tiny_run, tmp_path, capsys):
    """A run's config.yaml edited by hand to `lr: 1e-2` (a string to PyYAML) made --resume
    raise a TypeError: it is the number it reads as, equal to the one recorded."""
    config, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(config.train.out, run)
    recorded = (run / "config.yaml").read_text()
    assert config.train.lr == 0.01 and "  lr: 0.01\n" in recorded
    (run / "config.yaml").write_text(recorded.replace("  lr: 0.01\n", "  lr: 1e-2\n"))
    assert main(["train", "--resume", str(run), "--epochs", str(config.train.epochs + 1),
                 "--quiet"]) == 0
    assert f"epoch {config.train.epochs + 1}/{config.train.epochs + 1}" in capsys.readouterr().out
