"""What people run on trained models and cells, beside training: side-by-side comparisons on
long-range tasks (``compare``) and as language models (``compare_lm``), gradient flow over time
(``gradflow``), a page of cell activations (``inspect``), loss curves (``plots``), ONNX export
(``export``) and the engines' speed against ``torch.nn`` (``bench``).

Each module is imported on its own (``from gatedrnn.experiments.compare import compare``): some
need matplotlib or onnx, which the library itself does not.
"""
