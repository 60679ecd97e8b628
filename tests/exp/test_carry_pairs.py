"""The pairs a device call carries (ifsr.exp.carry.trim_pairs): only the pre-training pairs the preset draws, which
read there give back the same pairs, in the same order (so the same candidates and teacher-score cache keys)."""
import dataclasses
from pathlib import Path

from ifsr.exp.trainsets import pretrain_pairs
from ifsr.exp.carry import preset_configs, trim_pairs

ROOT = Path(__file__).resolve().parents[2]


def test_trimmed_pairs_give_the_same_pretraining_pairs(tmp_path, data_root):
    data = data_root.resolve()
    configs = preset_configs("smoke", root=ROOT, data_dir=str(data))
    drawn = pretrain_pairs(configs[0])
    n = trim_pairs(configs, tmp_path / "pairs")
    assert n == len(drawn) > 0
    full = sum(p.stat().st_size for p in (data / "pairs").glob("*.jsonl.gz"))
    assert sum(p.stat().st_size for p in (tmp_path / "pairs").glob("*.jsonl.gz")) < full / 10
    for sub in ("beir", "idf"):
        (tmp_path / sub).symlink_to(data / sub)
    again = pretrain_pairs(dataclasses.replace(configs[0], data_dir=str(tmp_path)))
    assert again == drawn
    bigger = dataclasses.replace(configs[0], pretrain_pairs=configs[0].pretrain_pairs + 1)  # a second draw
    assert trim_pairs([configs[0], bigger], tmp_path / "none") == 0 and not (tmp_path / "none").exists()
