"""The replay's worker settings close the known skews; its events are valid wire records in dataset order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.funnel.ordering import resolve_knobs
from agents.serving_setup import funnel_config
from models.data import Dataset, Interactions, ItemContent, Vocab
from streams.codec import decode_event
from streams.replay import REPLAY_CONTEXT, _catalog, _event, replay_settings
from streams.settings import load_settings


def test_replay_settings_turn_off_exploration_and_keep_the_towers_sequence() -> None:
    base = load_settings(features={"last_n": 20}, serving={"mmr_lambda": 0.7, "epsilon": 0.1})
    s = replay_settings(base, Path("/tmp/reg"), n_items=1682, max_len=50)
    assert s.features.last_n == 50 and s.models.registry_dir == Path("/tmp/reg")
    assert s.serving.exploration_policy == "none" and s.serving.epsilon == 0.0 and s.serving.mmr_lambda == 1.0
    assert s.serving.ann_k == 1682 and s.serving.candidate_limit >= 1682
    cfg = funnel_config(s.serving, s.serving.max_k)
    assert cfg.quotas["ann"] >= 1682
    knobs = resolve_knobs(10, REPLAY_CONTEXT, cfg.ordering)
    assert knobs.policy == "none" and knobs.mmr_lambda == 1.0


def _dataset() -> Dataset:
    content = ItemContent(
        np.array([[0, 1], [1, 0]], dtype=np.float32),
        ("a", "b"),
        np.zeros(2, np.int64),
        1,
        np.zeros(2, np.int64),
        np.zeros(2, np.int64),
    )
    inter = Interactions.build(np.array([0, 0]), np.array([1, 0]), np.array([100, 100]))
    return Dataset(
        "ml-100k", Vocab(("7",)), Vocab(("10", "9")), inter, content, np.zeros((1, 2), np.float32), ("x", "y")
    )


def test_events_and_catalog_are_valid_wire_records() -> None:
    ds = _dataset()
    ev = decode_event(_event(ds, 3, 0, 1, 100), now=1e9, limits=load_settings().validation)
    assert (ev.event_id, ev.user_id, ev.item_id, ev.type, ev.ts.timestamp()) == ("ml-100k-3", "7", "9", "view", 100.0)
    cat = _catalog(ds, 50)
    assert [k for k, _ in cat] == [b"10", b"9"] and b'"category":"b"' in cat[0][1] and b'"category":"a"' in cat[1][1]


def test_a_skew_left_on_keeps_the_base_setting_and_drops_its_request_override() -> None:

    from streams.replay import ReplayOptions

    base = load_settings(features={"last_n": 20}, serving={"mmr_lambda": 0.7, "epsilon": 0.1})
    skews = frozenset({"last_n", "exploration", "mmr", "seen"})
    s = replay_settings(base, Path("/tmp/reg"), n_items=1682, max_len=50, skews=skews)
    assert s.features.last_n == 20 and s.serving.epsilon == 0.1 and s.serving.mmr_lambda == 0.7
    assert s.serving.ann_k == base.serving.ann_k
    opts = ReplayOptions(data=Path("."), skews=frozenset({"exploration", "mmr"}))
    assert opts.context() == {}
    assert ReplayOptions(data=Path("."), skews=frozenset({"seen"})).context() == REPLAY_CONTEXT
    with pytest.raises(ValueError, match="unknown skews"):
        ReplayOptions(data=Path("."), skews=frozenset({"vibes"}))


def test_the_cli_passes_every_option_to_the_replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from streams import cli_replay, replay

    seen: list[replay.ReplayOptions] = []

    def fake_run(settings: object, opts: replay.ReplayOptions, progress: object) -> dict[str, object]:
        seen.append(opts)
        pair = {"hr@10": 0.2, "ndcg@10": 0.1}
        return {
            "online": pair,
            "offline": pair,
            "relative_difference": {"hr@10": 0.0, "ndcg@10": 0.0},
            "interactions_asked": 3,
            "users": 3,
            "model_version": "v0001",
            "pass": False,
        }

    monkeypatch.setattr(replay, "run_replay", fake_run)
    app = typer.Typer()
    cli_replay.register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps sub-command names
    args = [
        "replay",
        "--max-users",
        "7",
        "--sample-rate",
        "0.5",
        "--config",
        "tiny",
        "--seed",
        "3",
        "--train-replayed-only",
        "--skew",
        "mmr",
        "--skew",
        "seen",
        "--json",
        str(tmp_path / "r.json"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # pass false -> exit code 2
    opts = seen[0]
    assert (opts.max_users, opts.sample_rate, opts.config, opts.seed) == (7, 0.5, "tiny", 3)
    assert opts.train_replayed_only and opts.skews == frozenset({"mmr", "seen"})
    assert (tmp_path / "r.json").is_file()
