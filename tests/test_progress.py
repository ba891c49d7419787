"""Progress (`unetseg.progress`): the one style, outside a terminal (pytest captures stderr)."""

from __future__ import annotations

from unetseg.progress import counter, progress, say


def test_an_iterable_in_a_log_is_a_line_a_tenth(capsys):
    assert list(progress(range(20), "images", unit="image")) == list(range(20))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("images: 2/20 images (")
    assert "left" in lines[0] and lines[-1].startswith("images: 20/20 images (")


def test_a_counter_prints_the_same_lines_as_an_iterable(capsys):
    count = counter(20, "tiles", unit="tile")
    for _ in range(10):
        count.update(2)
    count.close()
    counted = capsys.readouterr().err.splitlines()
    list(progress(range(20), "tiles", unit="tile"))
    iterated = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in counted] == [line.split(" (")[0] for line in iterated]


def test_no_lines_when_disabled_or_not_wanted(capsys):
    for count in (counter(5, "tiles", enabled=False), counter(5, "tiles", lines=False)):
        count.update(5)
        count.close()
    assert list(progress([1, 2], "images", enabled=False)) == [1, 2]
    assert list(progress([1, 2], "images", lines=False)) == [1, 2]
    assert capsys.readouterr().err == ""


def test_say_writes_a_line_to_stderr(capsys):
    say("skipped a.png: cannot be read")
    assert capsys.readouterr().err == "skipped a.png: cannot be read\n"
