import pytest

from tadllm.distill.config import DEFAULT_DELTA, PRESETS, TADConfig, load_config


def test_defaults():
    c = load_config(None, ["use_cpu=true"])
    assert c.delta == DEFAULT_DELTA and c.lora_r == 128 and c.lora_alpha == 128 and c.lora_dropout == 0.05
    assert c.learning_rate == 2e-5 and str(getattr(c.lr_scheduler_type, "value", c.lr_scheduler_type)) == "constant"
    assert c.weight_decay == 0.01 and c.max_grad_norm == 1.0 and c.num_train_epochs == 1
    assert c.remove_unused_columns is False and c.use_peft and c.loss_mode == "tad"
    assert c.resolved_teacher_mode == "disable_adapter"
    assert load_config(None, ["use_peft=false", "use_cpu=true"]).resolved_teacher_mode == "frozen_copy"


def test_presets_and_explicit_delta():
    assert load_config(None, ["preset=quality", "use_cpu=true"]).delta == PRESETS["quality"]
    assert load_config(None, ["preset=speed", "use_cpu=true"]).delta == PRESETS["speed"]
    assert load_config(None, ["preset=speed", "delta=5", "use_cpu=true"]).delta == 5
    with pytest.raises(ValueError, match="preset"):
        load_config(None, ["preset=fast"])


def test_yaml_and_overrides_are_typed(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model_name_or_path: assets/x\nlearning_rate: 1e-4\nlora_r: 16\nuse_peft: false\n"
                    "lora_target_modules: [q_proj, v_proj]\nper_device_train_batch_size: 4\nuse_cpu: true\n"
                    "steps_per_trajectory: null\ntemperature: 2\n")
    c = load_config(path, ["delta=8", "lora_r=32", "bf16=False", "ce_weight=0.5", "--kl-weight=2",
                           "lora_target_modules=q_proj,k_proj", "output_dir=/tmp/x", "steps_per_trajectory=none"])
    assert c.learning_rate == 1e-4 and isinstance(c.learning_rate, float)
    assert c.lora_r == 32 and c.delta == 8 and c.use_peft is False and c.bf16 is False
    assert c.lora_target_modules == ["q_proj", "k_proj"] and c.per_device_train_batch_size == 4
    assert c.ce_weight == 0.5 and c.kl_weight == 2.0 and c.temperature == 2.0 and c.steps_per_trajectory is None
    assert c.output_dir == "/tmp/x"


def test_unknown_keys_list_close_matches(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lora_rank: 8\n")
    with pytest.raises(ValueError, match=r"lora_rank.*lora_r"):
        load_config(path)
    with pytest.raises(ValueError, match=r"deltaa.*delta"):
        load_config(None, ["deltaa=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["delta"])
    with pytest.raises(ValueError, match="lora_r"):
        load_config(None, ["lora_r=abc"])


@pytest.mark.parametrize("bad", ["delta=0", "delta=-3", "temperature=0", "loss_mode=ce",
                                 "teacher_mode=copy", "steps_per_trajectory=0"])
def test_invalid_values(bad):
    with pytest.raises(ValueError):
        load_config(None, [bad, "use_cpu=true"])


def test_disable_adapter_needs_lora():
    with pytest.raises(ValueError, match="disable_adapter"):
        TADConfig(use_peft=False, teacher_mode="disable_adapter", use_cpu=True)


def test_recipes_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    q = load_config(root / "testbed-tad-quality.yaml", ["use_cpu=true"])
    s = load_config(root / "testbed-tad-speed.yaml", ["use_cpu=true"])
    assert q.delta == PRESETS["quality"] and s.delta == PRESETS["speed"]
    assert q.use_peft is False and q.learning_rate == 1e-4 and q.model_name_or_path == "src/tadllm/assets/testbed-teacher"
