"""The device plan (`ifsr.exp.work.preset_work`): what `scripts/gpu_replicate.sh prepare` does here is not planned
for the device."""
from pathlib import Path

from ifsr.exp.work import preset_work

ROOT = Path(__file__).resolve().parents[2]


def test_prepared_plan_leaves_out_the_baselines_and_the_dense_teacher(data_root):
    data = str(data_root.resolve())
    whole = preset_work("smoke", root=ROOT, data_dir=data)
    left = preset_work("smoke", root=ROOT, data_dir=data, prepared=True)
    assert any(w.dense and w.kind == "encode" for w in whole.items)  # the baselines' dense corpus encodings
    assert any(w.dense and w.kind == "teacher" for w in whole.items)  # its scores of the training candidates
    assert not any(w.dense for w in left.items)
    assert [w for w in left.items if w.kind == "train"] == [w for w in whole.items if w.kind == "train"]
    # 12 stage-1 teacher runs, 12 stage-2 runs, and the plain arm's own 3 stage-1 starts (issue 27)
    assert left.stages == whole.stages == 27 and left.notebooks == whole.notebooks - 1
    # each stage saves steps // save_steps checkpoints (smoke: 2 steps, one every step; gpu-quick: 40, every 20),
    # which the device plan charges beside each stage's own fixed cost (benchmarks/gpu_plan.py)
    assert left.checkpoints == whole.checkpoints == 27 * 2
    quick = preset_work("gpu-quick", root=ROOT, data_dir=data, prepared=True)
    assert quick.checkpoints == quick.stages * (40 // 20) == 66
    # the students' evaluation: every corpus on its queries' vocabulary, and the doc-nnz sample in full
    evals = [w for w in left.items if w.kind == "encode"]
    assert {w.query_vocab for w in evals} == {True, False} and all(w.model == "splade-tiny" for w in evals)
    assert sum(w.count for w in evals if not w.query_vocab) < sum(w.count for w in evals if w.query_vocab)
    sparse = [w for w in whole.items if w.kind == "teacher" and not w.dense]
    assert sparse and sparse == [w for w in left.items if w.kind == "teacher"]  # the sparse teacher still scores there


def test_carry_refuses_an_unknown_preset(tmp_path, capsys):
    from ifsr.exp.carry import main

    assert main(["gpu-typo", str(tmp_path / "dest"), "--data-dir", str(tmp_path)]) == 2
    assert "carry: error: unknown preset 'gpu-typo'" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()  # nothing written before the check


def test_the_plan_counts_the_teacher_ablations_own_seeds(data_root, tmp_path):
    data = str(data_root.resolve())
    config = tmp_path / "smoke.yaml"
    config.write_text((ROOT / "configs" / "smoke.yaml").read_text() + "teacher_seeds: [0, 1, 2, 3, 4]\n")
    from ifsr.exp.config import AblationConfig, load_config

    base = load_config(AblationConfig, ROOT / "configs" / "smoke.yaml", data_dir=data)
    more = load_config(AblationConfig, config, data_dir=data)
    from ifsr.exp.work import _train_stages

    added = len(more.ablation_seeds()) - len(base.seeds)
    assert len(_train_stages(more, "01_teachers")) == len(_train_stages(base, "01_teachers")) + added * len(base.teachers)
    assert _train_stages(more, "02_idf_flops") == _train_stages(base, "02_idf_flops")  # the sweep keeps `seeds`
