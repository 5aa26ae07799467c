"""The image build's hooks change the new root's files only: mmdebstrap mounts the host's
/dev, /proc and /sys into the root while they run, and a chmod that reached the mount
point of dev/shm once made the host's /dev/shm unwritable (PostgreSQL then crashed)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from runners.image import ROOTFS_HOOKS

FIND_HOOKS = [hook for hook in ROOTFS_HOOKS if hook.startswith("find ")]
HOST_MOUNTS = ("dev", "proc", "sys", "run")


def test_every_find_hook_prunes_the_host_mounts() -> None:
    assert len(FIND_HOOKS) == 2
    for hook in FIND_HOOKS:
        words = shlex.split(hook)
        for mount in HOST_MOUNTS:
            assert f"$1/{mount}" in words, (mount, hook)
        assert words.index("-prune") < words.index("-exec")


@pytest.mark.parametrize("hook", FIND_HOOKS)
def test_find_hook_leaves_a_mounted_dev_shm_alone(tmp_path: Path, hook: str) -> None:
    root = tmp_path / "root"
    shm = root / "dev" / "shm"
    shm.mkdir(parents=True)
    shm.chmod(0o1777)  # stands for the host's /dev/shm seen through the root
    tool = root / "usr" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("")
    tool.chmod(0o6777)

    subprocess.run(["sh", "-c", hook, "hook", str(root)], check=True)

    assert shm.stat().st_mode & 0o7777 == 0o1777
    mode = tool.stat().st_mode & 0o7777
    assert mode & 0o6000 == 0 or "ug-s" not in hook
    assert mode & 0o022 == 0 or "go-w" not in hook
    assert os.access(tool, os.R_OK)
