"""The Open Inference Protocol (KServe/Triton "V2") over REST: health, metadata and inference for `drybean_svc`.

`routes.router` is a FastAPI router mounted on the service; `schemas` holds the protocol's JSON objects and
`tensors` turns input tensors into a feature matrix and predictions into output tensors.
"""
