"""A literal, slow statement of multi-block decoding as the reference defines it (d3LLM / the TAD release).

One prompt, no padding, one full forward per step, per-block bookkeeping in Python dictionaries — written
to be read against the rules, not to be fast, so the vectorised loop in `tadllm.decoding.loop` can be
checked against it token for token. Rules, in the order the reference applies them each step:

1. activation: an opened block becomes fully active once its predecessor is `decoded_token_threshold`
   decoded (the first block is active from the start);
2. opening: a new block opens when the last opened block is `block_add_threshold` decoded or complete;
3. one forward over `[prompt ; generation]` (the mask token's logit is never proposed);
4. every masked position of every opened block whose entropy is below the threshold (confidence policy:
   top-1 probability above it) is revealed;
5. fallback: if none passed, the best masked position of the whole opened region is revealed;
6. guaranteed progress: if the first block that still has masks got no reveal, its best position too.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def reference_multi_block(model, prompt: list[int], mask_id: int, gen_length: int, block_length: int,
                          policy: str, threshold: float, block_add_threshold: float,
                          decoded_token_threshold: float) -> tuple[list[int], list[int], int]:
    """(tokens, reveal_step, nfe) of one prompt."""
    x = list(prompt) + [mask_id] * gen_length
    P = len(prompt)
    blocks = [{"start": b * block_length, "end": (b + 1) * block_length, "full": b == 0}
              for b in range(gen_length // block_length)]
    opened = 1
    reveal = [0] * gen_length
    nfe = 0

    def masked(i):
        return x[P + i] == mask_id

    def progress(block):
        n = block["end"] - block["start"]
        return sum(not masked(i) for i in range(block["start"], block["end"])) / n

    while any(masked(i) for i in range(gen_length)):
        for b in range(1, opened):
            if not blocks[b]["full"] and progress(blocks[b - 1]) >= decoded_token_threshold:
                blocks[b]["full"] = True
        last = blocks[opened - 1]
        if opened < len(blocks) and progress(last) >= block_add_threshold:
            blocks[opened]["full"] = progress(last) >= decoded_token_threshold
            opened += 1

        nfe += 1
        logits = model(torch.tensor([x])).logits[0, P:].float()
        logits[:, mask_id] = float("-inf")
        logp = torch.log_softmax(logits, -1)
        token = logits.argmax(-1)
        if policy == "entropy":
            score = [-float(-(logp[i].exp() * logp[i].nan_to_num(neginf=0.0)).sum()) for i in range(gen_length)]
            passes = [-s < threshold for s in score]
        else:
            score = [float(logp[i, token[i]].exp()) for i in range(gen_length)]
            passes = [s > threshold for s in score]

        region = [i for b in blocks[:opened] for i in range(b["start"], b["end"]) if masked(i)]
        chosen = {i for i in region if passes[i]}
        if not chosen:
            chosen.add(max(region, key=lambda i: (score[i], -i)))
        first = next(b for b in blocks if any(masked(i) for i in range(b["start"], b["end"])))
        first_masked = [i for i in range(first["start"], first["end"]) if masked(i)]
        if not chosen & set(first_masked):
            chosen.add(max(first_masked, key=lambda i: (score[i], -i)))
        for i in chosen:
            x[P + i] = int(token[i])
            reveal[i] = nfe
    return x[P:], reveal, nfe
