"""gliomagrade: non-invasive glioma grading from the four routine MRI sequences.

Domain code (ingest, preprocess, models, train, evaluate, explain, export, store) lives here and
imports neither kfp nor kserve; ``gliomagrade.components``/``pipelines``/``serving`` adapt it.
"""

__version__ = "0.1.0"
