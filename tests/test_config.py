"""`tadllm.config.ConfigParser`, the command line of `tad generate/eval/trajectories/serve/quickstart`: flags
made from dataclass fields, `--config FILE.yaml` and `key=value`, one conversion (`coerce`) for all three,
precedence defaults < YAML < key=value < flags, unknown keys refused naming where they were given."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tadllm.config import ConfigParser


@dataclass
class Knobs:
    name: str | None = field(default=None, metadata={"help": "a name", "required": True})
    gen_length: int | None = None
    rate: float = 0.5
    save_strategy: str = "steps"
    multi_block: bool = False
    stop_at_eos: bool = True
    policy: str = field(default="a", metadata={"choices": ("a", "b")})
    values: list[float] = field(default_factory=lambda: [1.0])
    sweep: list[str] | None = field(default=None, metadata={"append": True})


def parser() -> ConfigParser:
    p = ConfigParser(prog="tad knobs")
    p.add_dataclass(Knobs, "knobs")
    return p


def parse(*argv) -> Knobs:
    (knobs,) = parser().parse(["--name", "x", *argv])
    return knobs


def test_kebab_and_snake_flags_and_key_value_give_the_same_typed_values(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("gen_length: 64\nrate: 1e-4\nvalues: [0.9, 0.5]\nsave_strategy: no\n")
    expected = Knobs(name="x", gen_length=64, rate=1e-4, values=[0.9, 0.5], save_strategy="no")
    assert parse("--gen-length", "64", "--rate", "1e-4", "--values", "0.9,0.5", "--save-strategy", "no") == expected
    assert parse("--gen_length", "64", "--rate=1e-4", "--values", "0.9,0.5", "--save_strategy", "no") == expected
    assert parse("gen_length=64", "rate=1e-4", "values=0.9,0.5", "save_strategy=no") == expected
    assert parse("--config", str(config)) == expected


def test_yaml_1_2_strings_stay_strings_and_bools_are_read_alike(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("save_strategy: no\nmulti_block: true\nstop_at_eos: false\n")
    from_yaml = parse("--config", str(config))
    assert from_yaml.save_strategy == "no" and from_yaml.multi_block is True and from_yaml.stop_at_eos is False
    assert parse("save_strategy=off").save_strategy == "off"
    assert parse("--multi-block").multi_block is True  # a bool flag alone is true
    assert parse("--multi-block", "false").multi_block is False
    assert parse("multi_block=true").multi_block is True
    assert parse("--no-stop-at-eos").stop_at_eos is False  # a bool defaulting to true also has --no-FLAG
    assert parse("--stop-at-eos", "false").stop_at_eos is False and parse().stop_at_eos is True


def test_precedence_defaults_yaml_key_value_flags(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("name: y\ngen_length: 32\nrate: 0.1\npolicy: b\n")
    assert parse().gen_length is None  # unset stays distinguishable from any value
    (knobs,) = parser().parse(["--config", str(config), "gen_length=64", "rate=0.2", "--rate", "0.3"])
    assert (knobs.name, knobs.gen_length, knobs.rate, knobs.policy) == ("y", 64, 0.3, "b")
    (knobs,) = parser().parse(["rate=0.2", "--config", str(config), "--name", "z"])  # order does not matter
    assert (knobs.name, knobs.rate) == ("z", 0.2)


def test_parse_args_gives_the_same_values_flat():
    args = parser().parse_args(["--name", "x", "--gen-length", "8"])
    assert (args.name, args.gen_length, args.rate, args.stop_at_eos) == ("x", 8, 0.5, True)


def test_a_repeated_flag_is_a_list_and_one_yaml_string_one_item(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("sweep: threshold=0.9,0.5\n")
    assert parse("--config", str(config)).sweep == ["threshold=0.9,0.5"]
    assert parse("--sweep", "threshold=0.9,0.5", "--sweep", "block_length=8,16").sweep == \
        ["threshold=0.9,0.5", "block_length=8,16"]


def test_unknown_keys_name_where_they_were_given(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("gen_lenght: 8\n")
    with pytest.raises(ValueError, match=rf"unknown config key\(s\): gen_lenght \(did you mean gen_length\?\) "
                                         rf"in {config}"):
        parse("--config", str(config))
    with pytest.raises(ValueError, match=r"unknown config key\(s\): rte \(did you mean rate\?\) on the command"):
        parse("rte=3")


def test_bad_values_are_refused_from_every_source(tmp_path, capsys):
    config = tmp_path / "k.yaml"
    config.write_text("policy: c\n")
    with pytest.raises(ValueError, match=rf"config key 'policy' in {config}: 'c' is not one of a, b"):
        parse("--config", str(config))
    with pytest.raises(ValueError, match="config key 'gen_length': cannot use 'long'"):
        parse("gen_length=long")
    for argv, message in ((["--policy", "c"], "argument --policy: invalid choice: 'c'"),
                          (["--gen-length", "long"], "argument --gen-length/--gen_length: invalid int value: 'long'"),
                          ([], "the following arguments are required: --name")):
        with pytest.raises(SystemExit):
            parser().parse(argv if not argv else ["--name", "x", *argv])
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tad knobs: error: ") and message in err


def test_a_missing_config_file_is_named():
    with pytest.raises(FileNotFoundError, match="config file nope.yaml does not exist"):
        parse("--config", "nope.yaml")


def test_an_abbreviated_flag_matching_both_spellings_of_one_option_is_not_ambiguous():
    assert parse("--gen", "8").gen_length == 8  # --gen-length / --gen_length: one option
    assert parse("--no-stop").stop_at_eos is False


def test_an_override_after_a_bool_flag_says_what_happened(capsys):
    with pytest.raises(SystemExit):
        parse("--multi-block", "rate=0.1")
    assert "argument --multi-block/--multi_block: expects true or false, got 'rate=0.1'; write key=value " \
           "overrides before the flag" in capsys.readouterr().err
    knobs = parse("rate=0.1", "--multi-block")
    assert knobs.rate == 0.1 and knobs.multi_block is True


@dataclass
class Inputs:
    runs: list[str] | None = field(default=None, metadata={"positional": True, "required": True,
                                                            "metavar": "RUN_DIR"})
    n_boot: int = 10


@dataclass
class OneInput:
    adapter: str | None = field(default=None, metadata={"positional": True, "required": True, "metavar": "ADAPTER"})
    out: str = "merged"


def parse_positional(cls, *argv):
    p = ConfigParser(prog="tad inputs")
    p.add_dataclass(cls, "inputs")
    (args,) = p.parse(list(argv))
    return args


def test_a_positional_field_takes_the_bare_arguments_and_leaves_key_value_to_overrides(tmp_path):
    assert parse_positional(Inputs, "a", "n_boot=3", "b/c") == Inputs(runs=["a", "b/c"], n_boot=3)
    assert parse_positional(Inputs, "--n-boot", "4", "a") == Inputs(runs=["a"], n_boot=4)
    config = tmp_path / "r.yaml"
    config.write_text("runs: [x, y]\nn_boot: 2\n")
    assert parse_positional(Inputs, "--config", str(config)) == Inputs(runs=["x", "y"], n_boot=2)
    assert parse_positional(Inputs, "--config", str(config), "z") == Inputs(runs=["z"], n_boot=2)  # bare wins
    assert parse_positional(OneInput, "ad", "out=o") == OneInput(adapter="ad", out="o")


def test_a_positional_field_is_checked_like_a_flag(capsys):
    for cls, argv, message in ((OneInput, ["a", "b"], "one ADAPTER expected, got a b"),
                               (OneInput, [], "the following arguments are required: ADAPTER"),
                               (Inputs, ["n_boot=2"], "the following arguments are required: RUN_DIR"),
                               (Knobs, ["--name", "x", "stray"], "unrecognized arguments: stray")):
        with pytest.raises(SystemExit):
            parse_positional(cls, *argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
