"""One prompt encoding for training and evaluation: `tadllm.models.encode_prompt`, and the ids that
trajectory generation, `tad eval` and `tad generate` actually decode from for the same question.

The decoding itself is replaced by a recorder (these tests are about the prompts, not the model), so the
tokenizers need no matching checkpoint: one with a chat template, the same one without (both add BOS on a
plain `encode`, like LLaDA's), and the bundled testbed tokenizer (no template, no BOS added).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tadllm
from tadllm.decoding import DecodeConfig
from tadllm.models import encode_prompt
from tadllm.models.family import resolve_family
from tadllm.tasks import Example

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz \n+-*/=;#.,:()?!_"
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<turn>{{ m['role'] }}\n{{ m['content'] }}<end>{% endfor %}"
            "{% if add_generation_prompt %}<turn>assistant\n{% endif %}")
TESTBED = Path(tadllm.__file__).parent / "assets" / "testbed-teacher"
GEN = 8


def bos_tokenizer(chat_template: bool):
    """A char tokenizer whose plain `encode` prepends BOS; with `chat_template`, a template that writes BOS."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<eos>", "<bos>", "<unk>", "<mask>", "<turn>", "<end>"]
    vocab = {t: i for i, t in enumerate(specials + list(ALPHABET))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>", bos_token="<bos>",
                                 unk_token="<unk>", mask_token="<mask>", padding_side="left")
    if chat_template:
        hf.chat_template = TEMPLATE
    return hf


def bundled_tokenizer():
    from tadllm.models import load_tokenizer

    return load_tokenizer(str(TESTBED))


def family_of(tok):
    return resolve_family(SimpleNamespace(model_type="llada"), tok)


def chars(tok, text: str) -> list[int]:
    return tok.convert_tokens_to_ids(list(text))


# ------------------------------------------------------------------------------------------ the rule


def test_chat_template_writes_the_only_bos():
    tok = bos_tokenizer(chat_template=True)
    ids = encode_prompt(tok, family_of(tok), "what is 2+3?")
    turn, end = tok.convert_tokens_to_ids(["<turn>", "<end>"])
    expected = ([tok.bos_token_id, turn] + chars(tok, "user\nwhat is 2+3?") + [end, turn]
                + chars(tok, "assistant\n"))
    assert ids == expected


def test_system_turn_comes_first():
    tok = bos_tokenizer(chat_template=True)
    ids = encode_prompt(tok, family_of(tok), "hi", system="be brief")
    text = tok.decode(ids)
    assert text.index("<turn>system\nbe brief<end>") < text.index("<turn>user\nhi<end>")
    assert ids.count(tok.bos_token_id) == 1


def test_no_template_gets_the_tokenizers_special_tokens():
    tok = bos_tokenizer(chat_template=False)
    fam = family_of(tok)
    assert encode_prompt(tok, fam, "what is 2+3?") == [tok.bos_token_id] + chars(tok, "what is 2+3?")
    assert encode_prompt(tok, fam, "q", system="s") == [tok.bos_token_id] + chars(tok, "s\nq")


def test_raw_is_encoded_like_a_prompt_without_template():
    """`chat=False` (tad generate --raw): the text as given, plus the tokenizer's own special tokens."""
    for template in (True, False):
        tok = bos_tokenizer(template)
        assert encode_prompt(tok, family_of(tok), "12+3", chat=False) == [tok.bos_token_id] + chars(tok, "12+3")
    tok = bos_tokenizer(True)
    with pytest.raises(ValueError, match="system prompt"):
        encode_prompt(tok, family_of(tok), "12+3", system="s", chat=False)


def test_missing_tokenizer_is_explained():
    tok = bos_tokenizer(True)
    with pytest.raises(ValueError, match="tokenizer"):
        encode_prompt(None, family_of(tok), "hi")


def test_testbed_tokenizer_adds_nothing():
    """The bundled teacher's tokenizer has no template and no post-processor: its prompts are the bare
    characters, with or without special tokens, so the quickstart's ids are the ones it had before."""
    tok = bundled_tokenizer()
    assert not getattr(tok, "chat_template", None)
    text = "start 74 add 29 mul 6"
    assert encode_prompt(tok, family_of(tok), text) == chars(tok, text)
    assert encode_prompt(tok, family_of(tok), text, chat=False) == chars(tok, text)


# ------------------------------------------------------------------- the three commands, same ids


class Recorder:
    """Stands in for `tadllm.decoding.generate`: records the prompts, answers a fixed unmasked canvas."""

    def __init__(self, tok):
        self.fill = tok.convert_tokens_to_ids("a")
        self.prompts: list[list[int]] = []

    def __call__(self, model, family, prompts, config, **_):
        self.prompts += [list(p) for p in prompts]
        n = len(prompts)
        return SimpleNamespace(tokens=torch.full((n, GEN), self.fill),
                               reveal_step=torch.arange(1, GEN + 1).repeat(n, 1), num_tokens=torch.full((n,), GEN),
                               nfe=torch.full((n,), GEN), tpf=torch.ones(n), wall_time=0.0)


class TwoPromptTask:
    name, kind = "two-prompt", "synthetic"

    def user_prompt(self, ex):
        return f"what is {ex.question}?"

    def privileged_prompt(self, ex, template=None):
        return f"what is {ex.question}? the answer is {ex.reference}."

    def extract_answer(self, text):
        return text

    def score_batch(self, texts, examples):
        return [True] * len(texts)


EXAMPLE = Example(id="p0", question="2+3", reference="5", answer="5")


def trajectory_prompts(tok, monkeypatch, tmp_path):
    from tadllm.trajectories import read_trajectories, runner

    rec = Recorder(tok)
    monkeypatch.setattr(runner, "decode_generate", rec)
    runner.generate_trajectories(object(), tok, family_of(tok), TwoPromptTask(), [EXAMPLE],
                                 DecodeConfig(gen_length=GEN, block_length=GEN), out_dir=tmp_path / "traj",
                                 keep="all", model_name="recorder", progress=False)
    (row,) = read_trajectories(tmp_path / "traj", as_list=True)
    assert rec.prompts == [row["teacher_prompt_ids"]]  # the stored teacher prompt is the one decoded
    return row["prompt_ids"], row["teacher_prompt_ids"]


def eval_prompt(tok, monkeypatch):
    import tadllm.decoding
    from tadllm.eval.runner import evaluate

    rec = Recorder(tok)
    monkeypatch.setattr(tadllm.decoding, "generate", rec)
    evaluate(object(), tok, family_of(tok), TwoPromptTask(), [EXAMPLE],
             DecodeConfig(gen_length=GEN, block_length=GEN), batch_size=1, progress=False)
    (prompt,) = rec.prompts
    return prompt


def generate_prompt(tok, monkeypatch, capsys, text: str, raw: bool = False):
    import tadllm.decoding
    from tadllm.decoding import cli

    rec = Recorder(tok)
    monkeypatch.setattr(tadllm.decoding, "generate", rec)
    monkeypatch.setattr(cli, "load_from_args", lambda args: (object(), tok, family_of(tok)))
    assert cli.main_generate(["--model", "recorded", "--prompt", text, "--gen-length", str(GEN),
                              "--block-length", str(GEN)] + (["--raw"] if raw else [])) == 0
    capsys.readouterr()
    (prompt,) = rec.prompts
    return prompt


@pytest.mark.parametrize("which", ["chat-template", "no-template", "testbed"])
def test_trajectories_eval_and_generate_encode_alike(which, monkeypatch, tmp_path, capsys):
    tok = bundled_tokenizer() if which == "testbed" else bos_tokenizer(which == "chat-template")
    task = TwoPromptTask()
    student, teacher = trajectory_prompts(tok, monkeypatch, tmp_path)
    evaluated = eval_prompt(tok, monkeypatch)
    generated = generate_prompt(tok, monkeypatch, capsys, task.user_prompt(EXAMPLE))
    assert student == evaluated == generated == encode_prompt(tok, family_of(tok), task.user_prompt(EXAMPLE))
    assert teacher == encode_prompt(tok, family_of(tok), task.privileged_prompt(EXAMPLE))
    question = chars(tok, task.user_prompt(EXAMPLE))
    if which == "testbed":
        assert student == question
        return
    assert student.count(tok.bos_token_id) == 1 and student[0] == tok.bos_token_id
    assert teacher.count(tok.bos_token_id) == 1 and teacher[0] == tok.bos_token_id
    assert (student == [tok.bos_token_id] + question) == (which == "no-template")


def test_generate_raw_skips_the_template(monkeypatch, capsys):
    tok = bos_tokenizer(chat_template=True)
    ids = generate_prompt(tok, monkeypatch, capsys, "start 1 add 2", raw=True)
    assert ids == [tok.bos_token_id] + chars(tok, "start 1 add 2")
