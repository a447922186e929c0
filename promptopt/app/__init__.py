"""Use cases the command line and the Python API share: run and resume, eval, compare (diff),
the CI gate, model defaults; `api` is the public Python API re-exported by `promptopt`."""
