"""The testbed end to end on CPU: pretraining objective, a resumed tiny pretraining run, the quickstart."""

import json

import pytest
import torch

from tadllm.testbed.pretrain import MaskedDiffusionCollator, masked_diffusion_loss
from tadllm.testbed.quickstart import BUNDLED_TEACHER


def test_collator_masks_only_the_response_and_labels_masked_tokens():
    torch.manual_seed(0)
    batch = [{"plain": [5, 6], "hinted": [[5, 6, 9]], "response": [7, 8, 1, 1]},
             {"plain": [5, 6, 7], "hinted": [[5, 6, 7, 9]], "response": [9, 9, 9, 1]}]
    out = MaskedDiffusionCollator(pad_id=1, mask_id=3, hint_fraction=0.0)(batch)
    ids, labels, attn = out["input_ids"], out["labels"], out["attention_mask"]
    width = ids.shape[1] - 4
    assert (labels[:, :width] == -100).all()  # prompts carry no loss
    masked = ids[:, width:] == 3
    assert torch.equal(labels[:, width:] != -100, masked)
    assert attn[0].tolist() == [0, 1, 1, 1, 1, 1, 1]
    assert torch.equal(labels[:, width:][masked], torch.tensor([[7, 8, 1, 1], [9, 9, 9, 1]])[masked])


def test_masked_diffusion_loss_weights_by_inverse_t():
    logits = torch.zeros(2, 3, 4)  # uniform: CE = log 4 per masked token
    labels = torch.tensor([[-100, 1, 2], [-100, -100, 3]])
    t = torch.tensor([0.5, 0.25])
    length = torch.tensor([2, 2])
    expected = ((2 * torch.log(torch.tensor(4.0)) / 0.5) / 2 + (torch.log(torch.tensor(4.0)) / 0.25) / 2) / 2
    assert masked_diffusion_loss(logits, labels, t, length) == pytest.approx(float(expected))


def test_bundled_teacher_loads_and_solves_problems():
    from tadllm.models import load_model
    from tadllm.testbed.pretrain import decode_accuracy
    from tadllm.testbed.quickstart import problems, testbed_task

    model, tokenizer, family = load_model(BUNDLED_TEACHER, dtype="float32", device="cpu")
    assert tokenizer is not None and family.mask_token_id == tokenizer.mask_token_id
    task, spec, meta = testbed_task(BUNDLED_TEACHER)
    _, test = problems(spec, meta, 8, 48)
    acc = decode_accuracy(model, tokenizer, task, test, meta["gen_length"], meta["block_length"])
    assert acc >= 75.0  # 93.4 % on 1,000 problems; 48 problems leave room for sampling noise


def test_tiny_pretraining_run_resumes(tmp_path):
    from tadllm.testbed.cli import main_pretrain

    args = [f"output_dir={tmp_path}", "d_model=32", "n_layers=1", "n_heads=2", "mlp_hidden_size=64", "n_train=200",
            "n_test=16", "accuracy_every=2", "accuracy_problems=8", "per_device_train_batch_size=8",
            "save_steps=2", "use_cpu=true", "logging_steps=1", "gen_length=64", "block_length=32", "warmup_steps=0"]
    main_pretrain(args + ["max_steps=2"])
    assert (tmp_path / "checkpoint-2").exists()
    main_pretrain(args + ["max_steps=4"])
    curve = [json.loads(line) for line in (tmp_path / "accuracy_curve.jsonl").read_text().splitlines()]
    assert [row["step"] for row in curve] == [2, 4]
    meta = json.loads((tmp_path / "final" / "testbed.json").read_text())
    assert meta["steps"] == 4
    from tadllm.models import load_model

    model, tokenizer, family = load_model(tmp_path / "final", device="cpu")
    assert family.name == "llada" and tokenizer.mask_token_id == family.mask_token_id


def test_unknown_pretrain_key_is_an_error():
    from tadllm.testbed.cli import main_pretrain

    with pytest.raises(ValueError, match="d_model"):
        main_pretrain(["d_modle=3"])


def test_quickstart_end_to_end_tiny(tmp_path):
    from tadllm.testbed.quickstart import QuickstartConfig, run

    cfg = QuickstartConfig(out_dir=str(tmp_path), train_problems=16, test_problems=16, train_steps=2,
                           train_batch_size=8, thresholds=[0.9, 0.5], batch_size=16, baselines=True)
    result = run(cfg)
    assert set(result["methods"]) == {"teacher", "tad-quality", "tad-speed", "control", "ce-only"}
    for name, res in result["methods"].items():
        assert len(res["runs"]) == 2
        for run_ in res["runs"]:
            assert 0.0 <= run_["aggregate"]["accuracy"] <= 100.0 and run_["aggregate"]["tpf"] > 0
    assert set(result["summary"]["aup"]) == set(result["methods"])
    assert (tmp_path / "report" / "accuracy_vs_tpf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tad-speed" in (tmp_path / "results.md").read_text()
