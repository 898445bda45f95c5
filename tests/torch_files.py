"""Writes real PyTorch .pth files for the tests, with PyTorch itself, in a subprocess.

PyTorch is a test dependency only (the package reads .pth files without it); running it in its
own process keeps its threading runtime away from TensorFlow's.
"""

import os
import subprocess
import sys

import numpy as np

_SCRIPT = """
import collections, sys
import numpy as np
import torch
data = np.load(sys.argv[1])
order = [line for line in open(sys.argv[1] + ".order").read().splitlines() if line]
state = collections.OrderedDict((k, torch.from_numpy(np.array(data[k], order="C")))
                                for k in order)
torch.save(state, sys.argv[2], _use_new_zipfile_serialization=sys.argv[3] == "zip")
"""


def save_pth(state: dict, path: str, fmt: str = "zip") -> str:
    """Saves ``{name: numpy array}`` as a PyTorch state dict in the ``zip`` or ``legacy`` format."""
    npz = str(path) + ".npz"
    np.savez(npz, **state)
    with open(npz + ".order", "w") as f:
        f.write("\n".join(state))
    subprocess.run([sys.executable, "-c", _SCRIPT, npz, str(path), fmt], check=True,
                   capture_output=True, timeout=300)
    os.remove(npz)
    os.remove(npz + ".order")
    return str(path)
