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


_PIX2PIX_HD = """
import sys
import numpy as np
import torch
import torch.nn as nn

kind, input_nc, ngf, n_down, n_blocks, n_blocks_local, fmt = sys.argv[1:8]
input_nc, ngf, n_down, n_blocks, n_blocks_local = map(int, (input_nc, ngf, n_down, n_blocks,
                                                             n_blocks_local))
IN = lambda c: nn.InstanceNorm2d(c, affine=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), IN(dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1),
                                        nn.Conv2d(dim, dim, 3), IN(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def global_layers(ngf):
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), IN(ngf), nn.ReLU(True)]
    for i in range(n_down):
        m = 2 ** i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), IN(ngf * m * 2),
                   nn.ReLU(True)]
    layers += [ResnetBlock(ngf * 2 ** n_down) for _ in range(n_blocks)]
    for i in range(n_down):
        m = 2 ** (n_down - i)
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1,
                                      output_padding=1), IN(ngf * m // 2), nn.ReLU(True)]
    return layers + [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]


class Global(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(*global_layers(ngf))

    def forward(self, x):
        return self.model(x)


class Local(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(*global_layers(2 * ngf)[:-3])
        self.model1_1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), IN(ngf),
                                      nn.ReLU(True), nn.Conv2d(ngf, 2 * ngf, 3, 2, 1),
                                      IN(2 * ngf), nn.ReLU(True))
        self.model1_2 = nn.Sequential(
            *[ResnetBlock(2 * ngf) for _ in range(n_blocks_local)],
            nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1), IN(ngf), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

    def forward(self, x):
        return self.model1_2(self.model1_1(x) + self.model(self.downsample(x)))


torch.manual_seed(0)
net = Global() if kind == "global" else Local()
weights = sys.argv[11] if len(sys.argv) > 11 else ""
if weights:
    data = np.load(weights)
    net.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files}, strict=True)
else:
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
x = torch.from_numpy(np.load(sys.argv[8]).transpose(0, 3, 1, 2).copy())
if len(sys.argv) > 12 and sys.argv[12] == "float64":
    net, x = net.double(), x.double()
with torch.no_grad():
    y = net(x).numpy().transpose(0, 2, 3, 1)
np.save(sys.argv[10], y)
torch.save(net.state_dict(), sys.argv[9], _use_new_zipfile_serialization=fmt == "zip")
"""


def pix2pix_hd_reference(kind: str, images: np.ndarray, folder: str, input_nc: int, ngf: int,
                         n_down: int, n_blocks: int, n_blocks_local: int = 3,
                         fmt: str = "legacy") -> tuple[str, np.ndarray]:
    """NVIDIA/pix2pixHD's ``GlobalGenerator`` (``kind`` ``global``) or ``LocalEnhancer``
    (``local``, one enhancer) built in PyTorch with random weights: its ``.pth`` and its outputs
    on ``images`` (``[N, H, W, C]``), computed by PyTorch."""
    folder = str(folder)
    inputs, pth, outputs = (os.path.join(folder, n) for n in ("x.npy", f"{kind}.pth", "y.npy"))
    np.save(inputs, images.astype(np.float32))
    subprocess.run([sys.executable, "-c", _PIX2PIX_HD, kind, str(input_nc), str(ngf),
                    str(n_down), str(n_blocks), str(n_blocks_local), fmt, inputs, pth, outputs],
                   check=True, capture_output=True, timeout=300)
    return pth, np.load(outputs)


def reference_generator_float64(state: dict, images: np.ndarray, folder: str, input_nc: int,
                                ngf: int, n_down: int, n_blocks: int) -> np.ndarray:
    """What the reference's ResNet generator computes in float64 with the weights ``state``
    (a reference state dict, ``{name: array}``) on ``images`` ``[N, H, W, C]``.

    NVIDIA's ``GlobalGenerator`` and the authors' ``ResnetGenerator`` (reflection padding,
    instance norm, no dropout) are the same module sequence with the same key names, so one
    PyTorch module computes both: pix2pixHD's global generator (``n_down`` 4) and CycleGAN's
    ``resnet_9blocks`` (``n_down`` 2, ``n_blocks`` 9).
    """
    folder = str(folder)
    inputs, weights, outputs = (os.path.join(folder, n) for n in ("x64.npy", "w64.npz", "y64.npy"))
    np.save(inputs, images.astype(np.float32))
    np.savez(weights, **{k: np.asarray(v) for k, v in state.items()})
    subprocess.run([sys.executable, "-c", _PIX2PIX_HD, "global", str(input_nc), str(ngf),
                    str(n_down), str(n_blocks), "0", "zip", inputs,
                    os.path.join(folder, "unused.pth"), outputs, weights, "float64"],
                   check=True, capture_output=True, timeout=600)
    return np.load(outputs)
