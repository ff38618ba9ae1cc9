#!/usr/bin/env python3
"""Export scikit-learn's 8x8 digits set (`sklearn.datasets.load_digits`) once into data/digits/.

Writes images.npy (uint8, shape (1797, 8, 8), values 0..16), labels.npy (uint8, shape (1797,),
values 0..9) and prints their SHA-256 sums and the versions used. The data ship inside
scikit-learn (no download). Run it in a throwaway venv:

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
    /tmp/skl/bin/python scripts/export_digits.py [OUT_DIR]     # default: data/digits
"""
import hashlib
import pathlib
import sys

import numpy as np
import sklearn
from sklearn.datasets import load_digits

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "data/digits")
out.mkdir(parents=True, exist_ok=True)
d = load_digits()
images = d.images.astype(np.uint8)
labels = d.target.astype(np.uint8)
assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
assert np.array_equal(images.astype(d.images.dtype), d.images), "pixel values are integers 0..16"
assert images.max() == 16 and labels.max() == 9
for name, a in [("images.npy", images), ("labels.npy", labels)]:
    np.save(out / name, a, allow_pickle=False)
    print(name, a.dtype, a.shape, hashlib.sha256((out / name).read_bytes()).hexdigest())
print("label counts", np.bincount(labels).tolist())
print("pixel sum", int(images.astype(np.int64).sum()))
print("scikit-learn", sklearn.__version__, "numpy", np.__version__, "python", sys.version.split()[0])
