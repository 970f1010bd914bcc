"""The side-by-side benchmark harness (entry point: ``benchmarks/harness.py``).

Modules, one job each: ``flows`` (the flows), ``profiles`` (counts and bounds), ``netns`` (the private
network namespace), ``machine`` (pinning and the report header), ``servers`` (start/stop both runtimes),
``client`` (the raw HTTP/1.1 load client), ``procstat`` (CPU and RSS from /proc), ``cells`` (what is
measured, in which order), ``results`` (the data), ``report`` (markdown and JSON).
"""
