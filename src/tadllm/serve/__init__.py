"""`tad serve`: an OpenAI-compatible HTTP server that decodes concurrent requests in shared forward passes.

- `text`: prompt encoding, detokenization and stop strings (no web framework, no model)
- `scheduler`: the worker thread that owns the model: groups of `DecodeState` rows, admission at every step,
  retirement of finished, cut or cancelled rows, events back to the requests
- `service`: turns a validated OpenAI request into a scheduler job (the limits and the 4xx messages)
- `schemas`: the OpenAI request and response models (pydantic)
- `app`: the FastAPI app: routes, server-sent events, error bodies
- `cli`: `tad serve`

Only `app` and `cli` import fastapi / uvicorn (the `serve` extra: `pip install "tadllm[serve]"`).
docs/serving.md describes the design and the limits.
"""
