"""`tad generate`: decode one prompt, optionally showing the parallel decoding live (`LiveView`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tadllm.cliargs import (
    ConfigParser,
    add_decoding_args,
    add_model_args,
    apply_model_settings,
    decode_config_from_args,
    load_from_args,
)

# gen_length when neither the flags nor the model's recorded settings give one
FALLBACKS = {"gen_length": 128, "block_length": 32}


@dataclass
class GenerateArguments:
    """What `tad generate` decodes and how it shows it."""

    prompt: str | None = field(default=None, metadata={
        "help": "user message (the chat template is applied if any)", "required": True})
    raw: bool = field(default=False, metadata={
        "help": "do not apply the chat template: the prompt is encoded as given, with the tokenizer's own special "
                "tokens (e.g. BOS) added, as for a tokenizer without a template"})
    show: bool = field(default=False, metadata={"help": "render the decoding live, step by step"})


def build_parser() -> ConfigParser:
    """`tad generate`'s options: `ModelArguments`, `GenerateArguments`, `DecodingArguments`."""
    parser = ConfigParser(prog="tad generate", description="Decode a prompt with a masked-diffusion LM.")
    add_model_args(parser)
    parser.add_dataclass(GenerateArguments, "prompt")
    add_decoding_args(parser, FALLBACKS)
    return parser


def main_generate(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tadllm.decoding import generate
    from tadllm.errors import UserError
    from tadllm.models import encode_prompt

    apply_model_settings(args, "tad generate", FALLBACKS)
    config = decode_config_from_args(args)
    model, tokenizer, family = load_from_args(args)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files; tad generate needs one to encode the prompt")
    ids = encode_prompt(tokenizer, family, args.prompt, chat=not args.raw)  # the ids tad eval would decode
    check_prompt_fits(model, len(ids), config.gen_length)
    show = LiveView(tokenizer, family.mask_token_id) if args.show else None
    out = generate(model, family, [ids], config, on_step=show)
    answer = tokenizer.decode(out.tokens[0, : int(out.num_tokens[0])], skip_special_tokens=True)
    print(answer)
    if not answer.strip():
        print(f"[tad] warning: the model generated no text before its end-of-sequence token (gen_length "
              f"{config.gen_length}, block_length {config.block_length}); a model trained on other lengths may "
              f"stop at once: try the --gen-length / --block-length it was trained with", file=sys.stderr)
    print(f"[tad] tokens {int(out.num_tokens[0])}  forward passes {int(out.nfe[0])}  "
          f"TPF {float(out.tpf[0]):.2f}  time {out.wall_time:.2f}s", file=sys.stderr)
    return 0


def check_prompt_fits(model, prompt_tokens: int, gen_length: int) -> None:
    """The prompt + the canvas must fit the model's positions (`overlong_prompts`, the check `tad eval` runs
    on every prompt), said in terms of this command's flags."""
    from tadllm.decoding.state import overlong_prompts
    from tadllm.errors import UserError

    limit, too_long = overlong_prompts(model, {"prompt": prompt_tokens}, gen_length)
    if too_long:
        room = limit - prompt_tokens
        fix = f"lower --gen-length to {room} or less" if room > 0 else "shorten the prompt"
        raise UserError(f"the prompt has {prompt_tokens} tokens + --gen-length {gen_length} > the model's maximum "
                        f"sequence length {limit}; {fix}")


class LiveView:
    """Redraws the response after every step: masked positions as '·', new tokens highlighted."""

    def __init__(self, tokenizer, mask_id: int):
        self.tokenizer, self.mask_id, self.previous = tokenizer, mask_id, None

    def __call__(self, step, tokens, revealed, indices=None):
        row, seen = tokens[0].tolist(), revealed[0].tolist()
        before = self.previous or [False] * len(row)
        pieces = []
        for tok, is_seen, was_seen in zip(row, seen, before):
            if not is_seen:
                pieces.append("\x1b[2m·\x1b[0m")
                continue
            piece = self.tokenizer.decode([tok], skip_special_tokens=False)
            pieces.append(piece if was_seen else f"\x1b[1;32m{piece}\x1b[0m")
        self.previous = seen
        sys.stdout.write("\x1b[2J\x1b[H" + f"step {step}  revealed {sum(seen)}/{len(seen)}\n\n" + "".join(pieces) + "\n")
        sys.stdout.flush()
