
import pytest
import torch

from tadllm.distill.data import TADCollator, TrajectoryDataset
from tadllm.trajectories import read_trajectories

from .conftest import make_records

MASK, PAD = 39, 1


def hand_record(pid="h0", prompt=(5, 6), tprompt=(7, 8, 9, 10)):
    return dict(problem_id=pid, sample_idx=0, prompt_ids=list(prompt), teacher_prompt_ids=list(tprompt),
                tokens=[11, 12, 13, 14], reveal_step=[2, 1, 4, 3], num_steps=4, correct=True, text="",
                answer="", meta="{}")


def item(rec, step):
    return {"prompt_ids": rec["prompt_ids"], "teacher_prompt_ids": rec["teacher_prompt_ids"],
            "tokens": rec["tokens"], "reveal_step": rec["reveal_step"], "step": step}


def test_collator_hand_made_trajectory():
    a = hand_record()
    b = hand_record("h1", prompt=(20, 21, 22, 23, 24), tprompt=(30,))
    batch = TADCollator(MASK, PAD, delta=2)([item(a, 1), item(b, 0)])
    M = MASK
    # x(1) = [M, 12, M, M]; x(0) = all masked
    assert batch["input_ids"].tolist() == [[PAD, PAD, PAD, 5, 6, M, 12, M, M],
                                           [20, 21, 22, 23, 24, M, M, M, M]]
    assert batch["attention_mask"].tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 1], [1] * 9]
    assert batch["teacher_input_ids"].tolist() == [[7, 8, 9, 10, M, 12, M, M],
                                                   [PAD, PAD, PAD, 30, M, M, M, M]]
    assert batch["teacher_attention_mask"].tolist() == [[1] * 8, [0, 0, 0, 1, 1, 1, 1, 1]]
    # the response slice is the last L = 4 positions of both inputs
    assert torch.equal(batch["input_ids"][:, -4:], batch["teacher_input_ids"][:, -4:])
    # s=1, r = [1, 0, 3, 2], δ=2: near = {0, 3}, distant = {2}; s=0, r = [2, 1, 4, 3]: near {0, 1}, distant {2, 3}
    assert batch["near"].tolist() == [[True, False, False, True], [True, True, False, False]]
    assert batch["distant"].tolist() == [[False, False, True, False], [False, False, True, True]]
    assert batch["labels"].tolist() == [[11, -100, 13, 14], [11, 12, 13, 14]]
    assert batch["step"].tolist() == [1, 0]


def test_collator_modes():
    a = hand_record()
    ce = TADCollator(MASK, PAD, delta=2, mode="ce_only")([item(a, 1)])
    assert ce["near"].tolist() == [[True, False, True, True]] and not ce["distant"].any()
    with pytest.raises(ValueError, match="loss mode"):
        TADCollator(MASK, PAD, delta=2, mode="bogus")
    with pytest.raises(ValueError, match="delta"):
        TADCollator(MASK, PAD, delta=0)


def test_collator_different_response_lengths_right_aligned():
    a = hand_record()
    short = dict(hand_record("h2"), tokens=[15, 16], reveal_step=[2, 1], num_steps=2)
    batch = TADCollator(MASK, PAD, delta=1)([item(a, 0), item(short, 0)])
    assert batch["labels"].shape == (2, 4)
    assert batch["input_ids"][1, -2:].tolist() == [MASK, MASK]
    assert batch["labels"][1].tolist() == [-100, -100, 15, 16]
    assert batch["near"][1].tolist() == [False, False, False, True]
    assert batch["distant"][1].tolist() == [False, False, True, False]
    assert torch.equal(batch["input_ids"][:, -4:][batch["near"] | batch["distant"]],
                       batch["teacher_input_ids"][:, -4:][batch["near"] | batch["distant"]])


def test_dataset_all_steps_and_items():
    recs = [hand_record(), hand_record("h1")]
    ds = TrajectoryDataset(recs, mask_token_id=MASK, vocab_size=40)
    assert len(ds) == 8 and ds.num_trajectories == 2
    assert [ds.locate(i) for i in range(8)] == [(0, s) for s in range(4)] + [(1, s) for s in range(4)]
    it = ds[5]
    assert it["step"] == 1 and list(it["tokens"]) == [11, 12, 13, 14]


def test_dataset_steps_per_trajectory_resampled_per_epoch():
    recs = make_records(n=6, length=16)
    ds = TrajectoryDataset(recs, mask_token_id=MASK, vocab_size=40, steps_per_trajectory=3, seed=1)
    assert len(ds) == 18

    def steps():
        return [ds.locate(i) for i in range(len(ds))]

    e0 = steps()
    for t in range(6):
        ss = [s for tr, s in e0 if tr == t]
        assert len(set(ss)) == 3 and all(0 <= s < 16 for s in ss)
    ds.set_epoch(1)
    e1 = steps()
    assert e1 != e0 and len(ds) == 18
    ds.set_epoch(0)
    assert steps() == e0  # deterministic in (seed, epoch)
    again = TrajectoryDataset(recs, mask_token_id=MASK, vocab_size=40, steps_per_trajectory=3, seed=1)
    assert [again.locate(i) for i in range(18)] == e0
    # k larger than S: all steps
    big = TrajectoryDataset([hand_record()], mask_token_id=MASK, steps_per_trajectory=10)
    assert sorted(big.locate(i)[1] for i in range(len(big))) == [0, 1, 2, 3]


def test_dataset_reads_parquet_folder_and_table(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = make_records(n=4, length=8)
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(recs[:2]), tmp_path / "shards" / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(recs[2:]), tmp_path / "shards" / "part-1.parquet")
    ds = TrajectoryDataset(str(tmp_path / "shards"), mask_token_id=MASK, vocab_size=40)
    assert ds.num_trajectories == 4 and ds.problem_ids == ["p0", "p1", "p2", "p3"] and len(ds) == 32
    assert len(read_trajectories(tmp_path / "shards" / "part-0.parquet")) == 2


def test_only_correct_filter():
    recs = [hand_record(), dict(hand_record("bad"), correct=False)]
    assert TrajectoryDataset(recs, mask_token_id=MASK).num_trajectories == 1
    assert TrajectoryDataset(recs, mask_token_id=MASK, only_correct=False).num_trajectories == 2
    with pytest.raises(ValueError, match="correct=False"):
        TrajectoryDataset([recs[1]], mask_token_id=MASK)


@pytest.mark.parametrize("change, message", [
    ({"tokens": [11, 12, 45, 14]}, "vocabulary size 40"),
    ({"tokens": [11, MASK, 13, 14]}, "mask token id 39"),
    ({"prompt_ids": [5, 41]}, "prompt_ids holds id 41"),
    ({"reveal_step": [2, 1, 5, 3]}, "1..num_steps=4"),
    ({"reveal_step": [0, 1, 2, 3]}, "1..num_steps=4"),
    ({"reveal_step": [1, 2, 3]}, "length"),
    ({"prompt_ids": []}, "non-empty"),
])
def test_validation_errors_name_the_problem(change, message):
    recs = [hand_record(), dict(hand_record("prob-7"), **change)]
    with pytest.raises(ValueError, match=message) as err:
        TrajectoryDataset(recs, mask_token_id=MASK, vocab_size=40)
    assert "prob-7" in str(err.value)


def test_missing_field_and_empty_dataset(tmp_path):
    rec = hand_record()
    del rec["reveal_step"]
    with pytest.raises(ValueError, match="reveal_step"):
        TrajectoryDataset([rec], mask_token_id=MASK)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        TrajectoryDataset(empty, mask_token_id=MASK)
    with pytest.raises(FileNotFoundError):
        TrajectoryDataset(tmp_path / "nope.parquet", mask_token_id=MASK)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no .parquet"):
        TrajectoryDataset(tmp_path / "nothing", mask_token_id=MASK)
