"""Prefect flows and deployments of the mlrdist pipeline: wiring only.

Every task is a few lines calling one ``mlrdist`` function, adding retries, persisted
results, run names and artifacts; numerics and I/O live in the package.
"""
