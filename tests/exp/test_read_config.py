"""A results folder's config is read through the one loader: fields the file lacks are their defaults."""
import yaml

from ifsr.exp.config import read_config


def test_read_config_fills_defaults(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"lambdas": [0.0], "train": {"steps": 300}}))
    cfg = read_config(tmp_path / "a.yaml")
    assert cfg["lambdas"] == [0.0] and cfg["train"]["steps"] == 300
    assert cfg["seeds"] == [0] and cfg["train"]["seed"] == 0  # absent: the defaults
    assert read_config(tmp_path / "missing.yaml") is None
