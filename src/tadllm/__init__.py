"""tadllm: Temporal-Aware trajectory self-Distillation for diffusion LLMs.

Stages, one package each: `models` (load a masked-diffusion LM), `decoding` (parallel decoding),
`trajectories` (verified teacher trajectories), `distill` (the TAD trainer), `tasks` (datasets and
verifiers), `eval` (accuracy / TPF / AUP and reports), `testbed` (the bundled tiny model's task).
Heavy submodules are imported lazily; `import tadllm` stays cheap.
"""

__version__ = "0.1.0"
