"""Issue 24: W&B tracking (``logging.backends=wandb``): which mode a run uses, and how nested keys
are flattened (tests/integration/test_tracking_wandb_offline.py runs an offline W&B run and reads
its transaction log back)."""

from banel_ray import config as C
from banel_ray.report import tracking


def test_wandb_mode_is_offline_unless_the_config_or_wandb_mode_says_otherwise(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.wandb_mode(C.load(None, [])) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.wandb_mode(C.load(None, [])) == "disabled"
    assert tracking.wandb_mode(C.load(None, ["logging.wandb_mode=online"])) == "online"  # the key wins
    assert tracking._nested({"a.b": 1, "a.c": 2, "x": 3, "x.y": 4}) == {"a": {"b": 1, "c": 2}, "x": 3, "x.y": 4}
