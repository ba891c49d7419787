"""The output policy (`unetseg.outputs`): what a refusal says, and what is never written."""

from __future__ import annotations

import pytest

from unetseg.outputs import (
    check_output_folder,
    claim_file,
    claim_folder,
    numbered_folder,
    refuse_existing_outputs,
    refuse_inside,
)


def test_one_existing_output_is_named_with_the_flag_and_both_fixes(tmp_path):
    (tmp_path / "report.html").write_text("keep me")
    with pytest.raises(ValueError) as refused:
        claim_folder(tmp_path, ["report.json", "report.html"], overwrite=False)
    assert str(refused.value) == (f"--out {tmp_path} already holds report.html; choose another "
                                  f"--out, or pass --overwrite to replace it")


def test_many_existing_outputs_are_counted_and_three_named(tmp_path):
    names = ["a.png", "b.png", "c.png", "d.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"already holds 4 of its outputs \(a\.png, b\.png, "
                                         r"c\.png and 1 more\); .* to replace them$"):
        refuse_existing_outputs(tmp_path / name for name in names)


def test_overwrite_or_no_existing_output_claims_the_folder(tmp_path):
    (tmp_path / "report.html").write_text("old")
    assert claim_folder(tmp_path, ["report.html"], overwrite=True) == tmp_path
    assert claim_folder(str(tmp_path / "new"), ["report.html"], overwrite=False) \
        == tmp_path / "new"
    assert not (tmp_path / "new").exists()              # checked, not created


def test_an_output_folder_that_is_a_file_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match=r"--out .*out is a file; expected a folder"):
        claim_folder(tmp_path / "out", ["report.html"], overwrite=True)


def test_an_output_file_is_refused_if_it_exists_unless_overwrite(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep")
    with pytest.raises(ValueError, match=r"--out .*model\.onnx exists; choose another --out, "
                                         r"or pass --overwrite to replace it"):
        claim_file(target, overwrite=False, flag="--out")
    assert claim_file(str(target), overwrite=True, flag="--out") == target
    with pytest.raises(ValueError, match="is a folder; expected a file name"):
        claim_file(tmp_path, overwrite=True, flag="--out")


def test_an_output_inside_the_data_is_refused_even_with_overwrite(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for inside in (data, data / "images" / "x.json", data / "images" / ".." / "r.json"):
        with pytest.raises(ValueError, match=r"--json .* is inside the data folder .*data; "
                                             r"choose another --json, outside the dataset"):
            claim_file(inside, overwrite=True, flag="--json", data_folders={data})
    # A sibling whose name starts with the data folder's is outside it.
    refuse_inside(tmp_path / "data2" / "r.json", {data}, "--json")


def test_the_numbered_policy_never_touches_what_exists(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").write_text("a file takes the number too")
    assert numbered_folder(tmp_path / "demo") == tmp_path / "demo-3"
    assert numbered_folder(str(tmp_path / "other")) == tmp_path / "other"


def test_check_output_folder_refuses_a_file_naming_the_flag(tmp_path):
    afile = tmp_path / "runs.txt"
    afile.write_text("")
    with pytest.raises(ValueError, match=rf"--out {afile} is a file; expected a folder"):
        check_output_folder(afile, "--out")


def test_check_output_folder_accepts_a_folder_or_a_missing_path(tmp_path):
    assert check_output_folder(str(tmp_path), "--out") == tmp_path
    missing = tmp_path / "not" / "yet"
    assert check_output_folder(missing, "--out") == missing
    assert not missing.exists()                        # checking creates nothing
