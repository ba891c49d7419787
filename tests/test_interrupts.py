"""The one interrupt handler (`unetseg.interrupts.StopSignals`), as training and predict use it."""

from __future__ import annotations

import os
import signal

import pytest

from unetseg.interrupts import StopSignals


def test_a_signal_is_recorded_for_the_job_to_stop_at_a_safe_point(capsys):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals(signals=(signal.SIGINT,), when="after this image") as stop:
        assert signal.getsignal(signal.SIGTERM) is before[1]        # only the signals asked
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)                          # returns: only recorded
        assert stop.requested and stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):                        # a second one aborts
            os.kill(os.getpid(), signal.SIGINT)
    assert "SIGINT: stopping after this image; Ctrl-C again to abort at once" in \
        capsys.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_rank_that_does_not_announce_stays_silent(capsys):
    with StopSignals(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signal == signal.SIGTERM and capsys.readouterr().err == ""


def test_ctrl_c_is_acknowledged_at_once_and_a_second_one_aborts(capsys):
    stop = StopSignals()
    stop._handle(signal.SIGINT, None)
    assert "stopping after this step and writing a checkpoint; Ctrl-C again to abort" in \
        capsys.readouterr().err
    assert stop.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
