import json

import pytest

from tadllm.testbed.tokenizer import (
    BOS_TOKEN,
    CHAR_ALPHABET,
    EOS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    build_char_tokenizer,
    char_vocab,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("char_tok")
    tok = build_char_tokenizer(d)
    return tok, d


@pytest.fixture(scope="module")
def texts():
    from tadllm.tasks.arith import ArithTask, generate_problems

    exs = generate_problems(200, seed=0)
    full, ans = ArithTask(hint="full"), ArithTask(hint="answer")
    out = []
    for e in exs:
        out += [e.question, e.reference, full.privileged_prompt(e), ans.privileged_prompt(e)]
    return out + ["", " ", "  a  b \n\nc ", "a , b . c", CHAR_ALPHABET]


def test_vocab_small_and_special_ids_distinct():
    tok = build_char_tokenizer()
    vocab = char_vocab()
    assert len(tok) == len(vocab) < 64
    assert tok.get_vocab() == vocab
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert tok.mask_token == MASK_TOKEN and tok.mask_token_id == ids[MASK_TOKEN]
    assert tok.eos_token_id == ids[EOS_TOKEN] and tok.bos_token_id == ids[BOS_TOKEN]
    assert tok.unk_token_id == ids[UNK_TOKEN]
    assert PAD_TOKEN == EOS_TOKEN and tok.pad_token_id == tok.eos_token_id
    assert tok.padding_side == "left"
    assert not getattr(tok, "chat_template", None)
    assert len(set(CHAR_ALPHABET)) == len(CHAR_ALPHABET)


def test_round_trip_one_token_per_char(saved, texts):
    tok, _ = saved
    for s in texts:
        ids = tok.encode(s)
        assert len(ids) == len(s), s  # one token per char, no BOS/EOS added
        assert tok.decode(ids) == s
        assert tok.convert_ids_to_tokens(ids) == list(s)
    batch = tok(texts[:16])["input_ids"]
    assert tok.batch_decode(batch) == texts[:16]


def test_autotokenizer_reload_gives_identical_ids(saved, texts):
    from transformers import AutoTokenizer

    tok, d = saved
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    re = AutoTokenizer.from_pretrained(str(d))
    for s in texts:
        assert re.encode(s) == tok.encode(s)
        assert re.decode(re.encode(s)) == s
    for attr in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "unk_token_id", "padding_side"):
        assert getattr(re, attr) == getattr(tok, attr), attr
    assert re.get_vocab() == tok.get_vocab()
    # a rebuild gives the same ids too
    assert build_char_tokenizer().encode(texts[0]) == tok.encode(texts[0])


def test_left_padding(saved):
    tok, _ = saved
    out = tok(["12", "1234", "start 5"], padding=True)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert [len(x) for x in ids] == [7, 7, 7]
    assert ids[0][:5] == [tok.pad_token_id] * 5 and mask[0] == [0] * 5 + [1] * 2
    assert ids[0][5:] == tok.encode("12")
    assert tok.decode(ids[1], skip_special_tokens=True) == "1234"


def test_special_tokens_and_unknown_chars(saved):
    tok, _ = saved
    s = f"12{MASK_TOKEN}{MASK_TOKEN}4{EOS_TOKEN}"
    ids = tok.encode(s)
    assert ids == tok.encode("12") + [tok.mask_token_id] * 2 + tok.encode("4") + [tok.eos_token_id]
    assert tok.decode(ids) == s
    assert tok.decode(ids, skip_special_tokens=True) == "124"
    assert tok.encode("Aé") == [tok.unk_token_id, tok.unk_token_id]  # no lower-casing, no normalisation


def test_save_char_tokenizer_after_reload(saved, tmp_path):
    from transformers import AutoTokenizer

    from tadllm.testbed.tokenizer import save_char_tokenizer

    tok, d = saved
    re = AutoTokenizer.from_pretrained(str(d))
    save_char_tokenizer(re, tmp_path / "again")
    cfg = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    again = AutoTokenizer.from_pretrained(str(tmp_path / "again"))
    s = "start 12 mul 3 ref ####36"
    assert again.encode(s) == tok.encode(s) and again.mask_token_id == tok.mask_token_id
    assert again.padding_side == "left"
