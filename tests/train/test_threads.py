import os
import subprocess
import sys

import torch
from torch import nn

from tunekit.train.threads import PARALLEL_ABOVE_MACS, default_threads, forward_macs


def test_forward_macs_counts_linear_and_conv_layers():
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    assert forward_macs(mlp, torch.zeros(32, 64)) == 32 * (64 * 256 + 256 * 10)
    conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
    assert forward_macs(conv, torch.zeros(2, 3, 5, 5)) == 2 * 8 * 5 * 5 * 3 * 9
    assert mlp.training  # the count's eval pass leaves the mode as it was


def test_small_steps_take_one_thread_and_large_ones_every_core():
    quickstart = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    assert forward_macs(quickstart, torch.zeros(64, 64)) < PARALLEL_ABOVE_MACS
    assert default_threads(quickstart, torch.zeros(64, 64), cores=8) == 1
    wide = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    assert default_threads(wide, torch.zeros(256, 64), cores=8) == 8


def test_the_cli_asks_openmp_to_wait_passively_unless_the_user_said_otherwise():
    probe = (
        "import os, sys; sys.argv = ['tunekit', '--version']\n"
        "from tunekit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert out.stdout.split()[-1] == "ACTIVE"
