"""The launcher's plumbing without starting workers: following rank 0's epochs, the children's import path, the
torchrun command, and the job folder's Parquet hand-over."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from bottega.training.torch.job import EpochFollower, append_epoch, read_part, write_part
from bottega.training.torch.launch import WORKER, child_pythonpath, pythonpath_env, torchrun_command


def test_the_follower_reads_complete_lines_once(tmp_path: Path) -> None:
    follower = EpochFollower(tmp_path)
    assert follower.new() == []
    append_epoch(tmp_path, 0, {"eval.loss": 0.5})
    with (tmp_path / "epochs.jsonl").open("a") as out:
        out.write('{"epoch": 1, "metrics": {"eval.lo')  # rank 0 is still writing this line
    assert follower.new() == [(0, {"eval.loss": 0.5})]
    assert follower.new() == []
    with (tmp_path / "epochs.jsonl").open("a") as out:
        out.write('ss": 0.25}}\n')
    assert follower.new() == [(1, {"eval.loss": 0.25})]


def test_children_see_this_process_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", "/no/such/folder")
    entries = child_pythonpath().split(os.pathsep)
    assert entries[0] == str(tmp_path)
    assert "/no/such/folder" not in entries
    training = next(p for p in sys.path if Path(p, "bottega", "training").is_dir())
    assert training in entries
    with pythonpath_env():
        assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)
    assert os.environ["PYTHONPATH"] == "/no/such/folder"


def test_the_torchrun_command(tmp_path: Path) -> None:
    command = torchrun_command(3, tmp_path)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command
    assert "--nproc-per-node=3" in command
    assert command[-3:] == ["-m", WORKER, str(tmp_path)]


def test_parts_keep_missing_values(tmp_path: Path) -> None:
    features = np.array([[1.0, np.nan], [np.nan, 4.0], [5.0, 6.0]])
    label = np.array([0.0, 1.0, 1.0])
    write_part(tmp_path / "train.parquet", features, label)
    back, labels = read_part(tmp_path / "train.parquet")
    np.testing.assert_array_equal(back, features)
    np.testing.assert_array_equal(labels, label)


def test_a_failing_worker_fails_with_its_output(tmp_path: Path) -> None:
    """torchrun with 2 workers on a folder without a job: the error carries the workers' traceback."""
    from bottega.training.torch.launch import TrainingFailed, launch

    with pytest.raises(TrainingFailed) as caught:
        launch("torchrun", 2, tmp_path)
    message = str(caught.value)
    assert message.startswith("torchrun with 2 processes exited with 1:")
    assert re.search(r"\[rank[01]\] Traceback \(most recent call last\):", message), message  # whichever failed last
    assert "FileNotFoundError: [Errno 2] No such file or directory" in message
    assert message.rstrip().endswith("job.json'")
