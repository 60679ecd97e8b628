"""The run key: the resolved config and the content of every input, never where the files are."""
import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from ifsr.data.beir import default_idf_path
from ifsr.exp.ablations import evaluate_trained
from ifsr.exp.config import AblationConfig, load_config
from ifsr.exp.runs import pretrain_config, run_key, start_config, trained_run
from ifsr.exp.trainsets import finetune_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(data_root, splade_tiny_path, minilm_path) -> AblationConfig:
    return load_config(AblationConfig, ROOT / "configs" / "smoke.yaml", data_dir=str(data_root.resolve()))


def test_key_ignores_how_the_data_dir_is_spelled(smoke, tmp_path):
    linked = tmp_path / "data"
    linked.symlink_to(Path(smoke.data_dir))
    relative = os.path.relpath(smoke.data_dir)
    key = run_key(smoke, smoke.train)
    for spelled in (str(linked), relative, smoke.data_dir + "/"):
        assert run_key(dataclasses.replace(smoke, data_dir=spelled), smoke.train) == key
    # nor where runs and caches go, nor the preset's grid or evaluation-only settings
    other = dataclasses.replace(smoke, runs_dir=str(tmp_path / "r"), cache_dir="elsewhere", preset="x",
                                lambdas=[9.0], headline_lambda=9.0, seeds=[0, 6], teacher_seeds=[0, 1, 2, 3],
                                eval_max_length=17)
    assert run_key(other, smoke.train) == key


def test_key_follows_the_idf_files_content_at_the_same_path(smoke, tmp_path):
    idf = tmp_path / "idf.json"
    shutil.copy(default_idf_path(smoke.data_dir), idf)
    cfg = dataclasses.replace(smoke, idf_path=str(idf))
    key = run_key(cfg, cfg.train)
    assert key == run_key(smoke, smoke.train)  # the same content under another path: the same run
    idf.write_text(idf.read_text().replace("1.", "2.", 1))
    assert run_key(cfg, cfg.train) != key


def test_key_follows_pretraining_and_eval_sets(smoke):
    key = run_key(smoke, smoke.train)
    assert run_key(dataclasses.replace(smoke, pretrain_sources=["squad_dev"]), smoke.train) != key
    assert run_key(dataclasses.replace(smoke, eval_datasets=["scifact"]), smoke.train) != key
    assert run_key(dataclasses.replace(smoke, teacher_lambda=0.5), smoke.train) != key  # the stage-1 start changes
    # a fine-tuning run starts from the stage-1 run of its own seed and arm (issue 27), whatever seeds[0] is
    assert run_key(dataclasses.replace(smoke, seeds=[1, 0]), smoke.train) == key
    seed1, plain = dataclasses.replace(smoke.train, seed=1), dataclasses.replace(smoke.train, query_weights="ones")
    assert start_config(smoke, seed1) == pretrain_config(smoke, "ensemble-minmax", 1)  # a teacher-ablation run
    assert start_config(smoke, plain) == pretrain_config(smoke, "ensemble-minmax", 0, "ones")  # plain FLOPS in stage 1
    assert start_config(smoke, plain).query_weights == "ones" and start_config(smoke).query_weights == "idf"
    assert run_key(smoke, start_config(smoke, plain), "pretrain") != run_key(smoke, start_config(smoke), "pretrain")
    one = dataclasses.replace(smoke, eval_datasets=["scifact"])  # Cranfield has no train split
    assert run_key(dataclasses.replace(one, eval_split="train"), smoke.train) != run_key(one, smoke.train)
    assert run_key(smoke, dataclasses.replace(smoke.train, lam=0.5)) != key
    assert run_key(smoke, smoke.train, "pretrain") != key
    with pytest.raises(ValueError, match="stage"):
        run_key(smoke, smoke.train, "warmup")


@pytest.mark.slow
def test_gpu_recipe_runs_on_cpu_in_miniature(data_root, minilm_path, splade_tiny_path, tmp_path):
    """configs/gpu.yaml's own path, which no session with a GPU has run yet: the MiniLM student with a new
    MLM head tied to its embeddings, the pre-training stage on the shared pairs, then fine-tuning from it,
    bf16 autocast. 1 + 2 steps on CPU, on a 300-document slice, 24 tokens (bf16 matmuls are slow on CPU)."""
    cfg = load_config(AblationConfig, ROOT / "configs" / "gpu.yaml",
                      train={"steps": 2, "batch_size": 2, "max_length": 24, "use_cpu": True, "save_steps": 1,
                             "logging_steps": 1, "warmup_steps": 0, "lambda_warmup_steps": 1},
                      corpus_limit=300, train_query_limit=8, dev_queries=2, mining_depth=20, pretrain_pairs=8,
                      pretrain_sources=["squad_dev", "medquad"], pretrain_steps=1, teacher_max_length=64,
                      eval_max_length=24, eval_datasets=["scifact"], data_dir=str(data_root),
                      runs_dir=str(tmp_path / "runs"), cache_dir=str(ROOT / ".cache" / "ifsr"))
    assert cfg.train.student == "all-MiniLM-L6-v2" and cfg.train.bf16 is True
    tc = dataclasses.replace(cfg.train, query_weights="idf", teacher="ensemble-minmax", lam=cfg.lambdas[0])
    run = trained_run(cfg, tc, lambda: finetune_dataset(cfg))
    pre = list((tmp_path / "runs").glob("pre-*/model/modules.json"))
    assert len(pre) == 1  # the pre-training stage ran, and fine-tuning started from its weights
    assert run.train_config.student == str(pre[0].parent) and run.train_config.bf16 and run.train_config.steps == 2
    assert trained_run(cfg, tc, None) == run  # the second time, read back without training
    (row,) = evaluate_trained(cfg, run.model_dir)
    assert 0 <= row["nDCG@10"] <= 1 and row["flops"] > 0 and len(row["per_query"]) > 0


def test_sweep_student_is_the_sweeps_run_and_refuses_points_off_the_curve(smoke):
    from ifsr.exp.ablations import sweep_student, sweep_train_config

    # the sweep's TrainConfig: the arm's query weights, the min-max teacher, lambda and seed
    tc = sweep_train_config(smoke, "flops", 0.1, 2)
    assert (tc.query_weights, tc.teacher, tc.lam, tc.seed) == ("ones", "ensemble-minmax", 0.1, 2)
    with pytest.raises(ValueError, match="lambda 0.5 is not on the curve"):
        sweep_student(smoke, "idf-flops", 0.5)
    with pytest.raises(ValueError, match="arm"):
        sweep_student(smoke, "dense", 0.1)
    with pytest.raises(ValueError, match="arm must be one of"):
        sweep_train_config(smoke, "dense", 0.1, 0)


def test_a_field_added_with_its_default_re_keys_no_run(smoke):
    """A TrainConfig / AblationConfig grown by one field (a subclass standing in for the edited dataclass): with the
    field at its default every key is the one before; set, it changes the key. Every field of today's configs
    is always hashed, so no existing run is re-keyed either."""
    from ifsr.distill.config import TrainConfig
    from ifsr.exp.config import AblationConfig
    from ifsr.exp.runs import KEYED_ABLATION_FIELDS, KEYED_TRAIN_FIELDS, NOT_TRAINING

    grown_train = dataclasses.make_dataclass("GrownTrain", [("label_smoothing", float, dataclasses.field(default=0.0))],
                                             bases=(TrainConfig,))
    grown_cfg = dataclasses.make_dataclass("GrownAblation", [("hard_negative_depth", int, dataclasses.field(default=0))],
                                           bases=(AblationConfig,))
    key = run_key(smoke, smoke.train)
    train = grown_train(**dataclasses.asdict(smoke.train))
    cfg = grown_cfg(**{f.name: getattr(smoke, f.name) for f in dataclasses.fields(AblationConfig)})
    assert run_key(smoke, train) == key and run_key(cfg, smoke.train) == key
    assert run_key(smoke, dataclasses.replace(train, label_smoothing=0.1)) != key
    assert run_key(dataclasses.replace(cfg, hard_negative_depth=5), smoke.train) != key
    # the fields of the key's present form: always hashed; those added since (teachers as a list): only when set
    assert {f.name for f in dataclasses.fields(TrainConfig)} - KEYED_TRAIN_FIELDS == {"teacher_names", "teacher_weights"}
    assert {f.name for f in dataclasses.fields(AblationConfig)} - NOT_TRAINING - KEYED_ABLATION_FIELDS == {"ensemble"}


def test_teachers_as_a_list(smoke, tmp_path, monkeypatch):
    """The default ensemble is the dense and the sparse teacher at equal weights and keys no run anew; a list in
    the config names its members (a member's name is its single-teacher arm) and keys its runs; a teacher kind is
    'dense', 'sparse' or 'module:Class' (a Teacher subclass in a file of its own)."""
    from ifsr.distill.teachers import DenseTeacher, SparseTeacher, build_teacher
    from ifsr.exp.trainsets import build_teachers

    default = [{"name": "dense", "kind": "dense", "model": smoke.dense_teacher, "weight": 1.0},
               {"name": "sparse", "kind": "sparse", "model": smoke.sparse_teacher, "weight": 1.0}]
    assert smoke.members() == default and smoke.teacher_fields() == {}
    listed = dataclasses.replace(smoke, ensemble=[dict(m) for m in default])
    tc = pretrain_config(listed, "ensemble-minmax", 0)
    assert tc.teacher_names == ["dense", "sparse"] and tc.teacher_weights is None
    assert run_key(listed, tc) != run_key(smoke, pretrain_config(smoke, "ensemble-minmax", 0))  # set: keyed
    three = dataclasses.replace(smoke, teachers=["third", "ensemble-minmax"], ensemble=default + [
        {"name": "third", "kind": "my_teacher:Third", "model": smoke.dense_teacher, "weight": 2}])
    tc = pretrain_config(three, "third", 0)
    assert tc.teacher == "third" and tc.teacher_names == ["dense", "sparse", "third"]
    assert tc.teacher_weights == [1.0, 1.0, 2.0]
    (tmp_path / "my_teacher.py").write_text(
        "from ifsr.distill.teachers import DenseTeacher\n\n\nclass Third(DenseTeacher):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    built = build_teachers(three)
    assert [type(t).__name__ for t in built] == ["DenseTeacher", "SparseTeacher", "Third"]
    assert isinstance(build_teacher("sparse", smoke.sparse_teacher), SparseTeacher)
    assert isinstance(build_teacher("dense", smoke.dense_teacher), DenseTeacher)
    for bad in ("colbert", "my_teacher:Nope", "os:path"):
        with pytest.raises(ValueError, match="teacher kind"):
            build_teacher(bad, "m")
    with pytest.raises(ValueError, match="teachers must be"):
        dataclasses.replace(smoke, teachers=["dense"], ensemble=default[1:])  # no member named dense
    for bad in ([], [{"name": "a", "kind": "dense"}], [default[0], default[0]], [{**default[0], "weight": 0}],
                [{**default[0], "name": "ensemble-raw"}], [{**default[0], "colour": "red"}]):
        with pytest.raises(ValueError, match="ensemble"):
            dataclasses.replace(smoke, teachers=["ensemble-minmax"], ensemble=bad)


def test_finetune_n_neg_re_keys_stage_2_and_not_stage_1(smoke, tmp_path):
    """Stage 2's own negatives re-key its runs (through their TrainConfig) and leave every stage-1 run's key, so a
    preset that sets it keeps its pre-trained students; its candidates carry that many negatives."""
    from ifsr.exp.ablations import sweep_train_config
    from ifsr.exp.runs import start_config

    other = dataclasses.replace(smoke, finetune_n_neg=smoke.train.n_neg + 1)
    for lam in smoke.lambdas:
        tc, tc2 = sweep_train_config(smoke, "idf-flops", lam, 0), sweep_train_config(other, "idf-flops", lam, 0)
        assert run_key(other, tc2) != run_key(smoke, tc)
        assert run_key(other, start_config(other, tc2), "pretrain") == run_key(smoke, start_config(smoke, tc), "pretrain")
    assert run_key(dataclasses.replace(smoke, finetune_n_neg=smoke.train.n_neg), smoke.train) == run_key(smoke, smoke.train)
    from ifsr.exp.trainsets import finetune_candidates

    cands, _, _ = finetune_candidates(dataclasses.replace(other, cache_dir=str(tmp_path / "cache")))
    assert cands and {len(c.negatives) for c in cands} == {smoke.train.n_neg + 1}
