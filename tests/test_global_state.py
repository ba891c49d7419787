"""Library calls leave the process as they found it: only the CLI entry point tunes it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter: other tests in this session call the CLI, which tunes malloc.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from PIL import Image

    def state():
        umask = next(line.split()[1] for line in open("/proc/self/status")
                     if line.startswith("Umask:"))
        import unetseg.allocator as allocator
        return {"pillow_limit": Image.MAX_IMAGE_PIXELS, "umask": umask,
                "environment": dict(os.environ), "malloc_tuned": allocator._malloc_tuned,
                "sigint": str(signal.getsignal(signal.SIGINT)),
                "sigterm": str(signal.getsignal(signal.SIGTERM))}

    import numpy as np
    # torch sets TORCHINDUCTOR_CACHE_DIR when it first imports torch._dynamo (its optimisers
    # do, at the first step): torch's own doing, so it happens before the baseline.
    import torch._dynamo
    before = state()
    from unetseg import load_segmenter, predict, fit
    from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
    from unetseg.jobs.predict import predict_files
    config = RunConfig(data=DataConfig(size=32, batch_size=8, train_samples=16, val_samples=8),
                       model=UNetConfig(base=4),
                       train=TrainConfig(out=sys.argv[1] + "/run", epochs=1, progress=False))
    fit(config)
    import unetseg.data.transforms                  # albumentations: its update check is off
    after_fit = state()
    segmenter = load_segmenter(sys.argv[1] + "/run/best.safetensors")
    predict(segmenter, np.zeros((40, 50, 3), np.uint8), tile=32)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(sys.argv[1] + "/in.png")
    predict_files(segmenter, [sys.argv[1] + "/in.png"], sys.argv[1] + "/out")
    after_predict = state()
    print(json.dumps([before, after_fit, after_predict]))
""")


@pytest.mark.slow
def test_fit_and_predict_leave_process_wide_state_alone(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                            text=True, check=True, env={"PATH": "/usr/bin:/bin",
                                                        "OMP_NUM_THREADS": "1"})
    before, after_fit, after_predict = json.loads(result.stdout.splitlines()[-1])
    assert before["malloc_tuned"] is False
    for after in (after_fit, after_predict):
        assert set(after["environment"].items()) ^ set(before["environment"].items()) == set()
        assert after == before


@pytest.mark.slow
def test_the_cli_is_what_tunes_the_allocator(tmp_path):
    script = ("import unetseg.allocator as r, unetseg.cli as cli, sys;"
              "code = cli.main(['evaluate', sys.argv[1]]);"
              "print(code, r._malloc_tuned)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.stdout.split() == ["2", "True"]
