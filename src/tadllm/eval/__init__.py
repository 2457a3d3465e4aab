"""Evaluation metrics and reports: accuracy / TPF aggregation (`metrics`), AUP (`aup`), and the
results.json -> markdown / PNG report (`report`).

Submodules are imported explicitly (``from tadllm.eval.aup import aup``); nothing heavy is imported
here, and matplotlib is only imported by the report's plotting functions.
"""
