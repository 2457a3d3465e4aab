"""`tad generate`'s options (`tadllm.decoding.cli`): the same setting as a flag, as key=value and in a YAML file
parses alike, the decoding flags are DecodeConfig's own fields, and lengths left unset stay None (the model's
recorded lengths fill them)."""

from __future__ import annotations

import dataclasses

from tadtest import parsed_three_ways

from tadllm.cliargs import ModelArguments
from tadllm.decoding.cli import GenerateArguments, build_parser
from tadllm.decoding.config import DecodeConfig, DecodingArguments

SETTINGS = {"prompt": "start 1 add 2", "raw": "true", "block_length": "16", "policy": "entropy", "threshold": "0.5",
            "temperature": "0.5", "use_cache": "prefix", "device": "cpu", "compile": "true", "seed": "7"}


def test_a_flag_a_key_value_and_yaml_parse_alike(tmp_path):
    flags, overrides, from_yaml = parsed_three_ways(build_parser, ["--model", "m"], SETTINGS, tmp_path)
    assert flags == overrides == from_yaml
    model, prompt, decoding = flags
    assert model == ModelArguments(model="m", device="cpu", compile=True)
    assert prompt == GenerateArguments(prompt="start 1 add 2", raw=True)
    assert decoding == DecodingArguments(block_length=16, policy="entropy", threshold=0.5, temperature=0.5,
                                         use_cache="prefix", seed=7)


def test_every_decode_config_field_is_an_option_with_help():
    parser = build_parser()
    for f in dataclasses.fields(DecodeConfig):
        assert f.name in parser.options and f.metadata.get("help"), f.name
    help_text = parser.format_help()
    assert "--gen-length" in help_text and "--gen_length" in help_text and "--no-stop-at-eos" in help_text


def test_unset_lengths_stay_none_and_the_model_fills_them():
    from tadllm.cliargs import apply_model_settings
    from tadllm.testbed.quickstart import BUNDLED_TEACHER

    args = build_parser().parse_args(["--model", str(BUNDLED_TEACHER), "--prompt", "x", "--block-length", "16"])
    assert (args.gen_length, args.block_length) == (None, 16)
    apply_model_settings(args, "tad generate", {"gen_length": 128})
    assert (args.gen_length, args.block_length) == (64, 16)  # testbed.json's 64; the flag's 16 kept
    args = build_parser().parse_args(["--model", "/nonexistent", "--prompt", "x"])
    apply_model_settings(args, "tad generate", {"gen_length": 128})
    assert (args.gen_length, args.block_length) == (128, 32)
