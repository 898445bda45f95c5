"""The reference's training steps in PyTorch (pix2pix, CycleGAN, CUT): a same-machine yardstick.

Usage:
  python benchmarks/bench_torch_step.py [--steps=20 --warmup=5]
  python benchmarks/bench_torch_step.py --model=cycle_gan --steps=8 --warmup=2
  python benchmarks/bench_torch_step.py --model=cut --cut_mode=fastcut --steps=8 --warmup=2
  python benchmarks/bench_torch_step.py --model=pix2pix_hd --height=256 --steps=3 --warmup=2
  # the AVX2 class on an AVX-512 machine (both libraries' kernels capped at AVX2):
  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_torch_step.py

The authors' scripts cannot run here (no downloads), so this is our own PyTorch re-implementation
of the reference's default pix2pix iteration — not the authors' code, but the same computation:
``unet_256`` (batch norm without conv biases, dropout 0.5 on the three inner 8ngf up blocks,
LeakyReLU 0.2 down / ReLU up, tanh), the 70x70 ``basic`` PatchGAN on the concatenated pair, BCE
with logits, one generator forward, a discriminator update on the detached output (loss halved),
then a generator update on GAN + 100 * L1, Adam(2e-4, 0.5, 0.999), batch 1, 256x256 random
images. ``--model=cycle_gan``: two ``resnet_9blocks`` generators and two basic PatchGANs with
affine-free instance norm, LSGAN, cycle weight 10, identity 0.5, the generators' joint update then
both discriminators' (the image pools, which only copy images, are left out). ``--model=cut``:
CUT's iteration (taesungp/contrastive-unpaired-translation): antialiased ``resnet_9blocks`` and
basic PatchGAN (blur-pool downsampling, bilinear upsampling), xavier init, D's update, then G's and
F's on LSGAN + PatchNCE over layers 0,4,8,12,16 with 256 patches (``--cut_mode=cut``: on
``[A; B]`` with the identity term; ``fastcut``: on A, weight 10, a random flip).
``--model=pix2pix_hd``: NVIDIA/pix2pixHD's iteration: the global generator (36 -> 3 channels, 4
downsamplings, 9 blocks of 1,024), two multi-scale PatchGANs (padding 2, every layer's output),
LSGAN + feature matching + VGG19 loss (random VGG weights: the cost is the same), one forward,
G's then D's Adam step, batch 1, ``--height`` x 2 ``--height``. Compare with
``bench_train_step.py`` (same ``--model``) run in the same session. PyTorch is the ``test`` extra's
CPU wheel.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
flags.DEFINE_integer("warmup", 5, "Untimed steps first.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads; 0 = the number of CPUs.")
flags.DEFINE_enum("model", "pix2pix", ["pix2pix", "cycle_gan", "cut", "pix2pix_hd"],
                  "Which reference step.")
flags.DEFINE_integer("height", 512, "pix2pix_hd: image height (the width is twice it).")
flags.DEFINE_enum("cut_mode", "cut", ["cut", "fastcut"], "CUT or FastCUT (--model=cut).")


def build(torch):
    nn = torch.nn

    class Block(nn.Module):
        """One U-Net level around ``inner`` (None at the innermost level)."""

        def __init__(self, outer, inner_nc, input_nc=None, inner=None, outermost=False,
                     innermost=False, dropout=False):
            super().__init__()
            self.outermost = outermost
            input_nc = input_nc or outer
            down = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
            if outermost:
                up = nn.ConvTranspose2d(inner_nc * 2, outer, 4, 2, 1)
                layers = [down, inner, nn.ReLU(True), up, nn.Tanh()]
            elif innermost:
                up = nn.ConvTranspose2d(inner_nc, outer, 4, 2, 1, bias=False)
                layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nn.BatchNorm2d(outer)]
            else:
                up = nn.ConvTranspose2d(inner_nc * 2, outer, 4, 2, 1, bias=False)
                layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner_nc), inner,
                          nn.ReLU(True), up, nn.BatchNorm2d(outer)]
                if dropout:
                    layers.append(nn.Dropout(0.5))
            self.model = nn.Sequential(*layers)

        def forward(self, x):
            return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)

    ngf = 64
    block = Block(ngf * 8, ngf * 8, innermost=True)
    for _ in range(3):
        block = Block(ngf * 8, ngf * 8, inner=block, dropout=True)
    block = Block(ngf * 4, ngf * 8, inner=block)
    block = Block(ngf * 2, ngf * 4, inner=block)
    block = Block(ngf, ngf * 2, inner=block)
    generator = Block(3, ngf, input_nc=3, inner=block, outermost=True)

    ndf = 64
    d_layers = [nn.Conv2d(6, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for prev, mult, stride in ((1, 2, 2), (2, 4, 2), (4, 8, 1)):
        d_layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                     nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
    d_layers.append(nn.Conv2d(ndf * 8, 1, 4, 1, 1))
    discriminator = nn.Sequential(*d_layers)
    for net in (generator, discriminator):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    return generator, discriminator


def resnet_networks(torch, antialias: bool = False):
    """Builders of the reference's ``resnet_9blocks`` generator and basic PatchGAN with
    affine-free instance norm (convs before it keep their bias, as the reference's use_bias), as
    flat ``nn.Sequential``s with the reference's module indices. ``antialias``: CUT's variant
    (stride-1 convs followed by the fixed [1,2,1] blur with stride 2; the transposed convs
    replaced by the fixed [1,3,3,1] upsampling filter and a 3x3 conv)."""
    nn, F = torch.nn, torch.nn.functional

    def norm(c):
        return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)

    class Blur(nn.Module):
        def __init__(self, c):
            super().__init__()
            a = torch.tensor([1.0, 2.0, 1.0])
            self.register_buffer("filt", (a[:, None] * a[None] / 16)[None, None].repeat(c, 1, 1, 1))

        def forward(self, x):
            return F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), self.filt, stride=2,
                            groups=x.shape[1])

    class Up(nn.Module):
        def __init__(self, c):
            super().__init__()
            a = torch.tensor([1.0, 3.0, 3.0, 1.0])
            self.register_buffer("filt",
                                 (a[:, None] * a[None] / 64 * 4)[None, None].repeat(c, 1, 1, 1))

        def forward(self, x):
            out = F.conv_transpose2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), self.filt,
                                     stride=2, padding=2, groups=x.shape[1])
            return out[:, :, 1:-1, 1:-1]

    class ResBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), norm(c),
                                       nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
                                       norm(c))

        def forward(self, x):
            return x + self.block(x)

    def generator(ngf=64, input_nc=3, n_down=2, n_blocks=9):
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
        for mult in (2 ** i for i in range(n_down)):
            c = ngf * mult
            layers += [nn.Conv2d(c, 2 * c, 3, 1 if antialias else 2, 1), norm(2 * c),
                       nn.ReLU(True)] + ([Blur(2 * c)] if antialias else [])
        layers += [ResBlock(ngf * 2 ** n_down) for _ in range(n_blocks)]
        for mult in (2 ** i for i in range(n_down, 0, -1)):
            c = ngf * mult
            up = ([Up(c), nn.Conv2d(c, c // 2, 3, 1, 1)] if antialias
                  else [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1)])
            layers += up + [norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        return nn.Sequential(*layers)

    def discriminator(ndf=64):
        layers = [nn.Conv2d(3, ndf, 4, 1 if antialias else 2, 1), nn.LeakyReLU(0.2, True)]
        layers += [Blur(ndf)] if antialias else []
        for prev, mult, down in ((1, 2, True), (2, 4, True), (4, 8, False)):
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if down and not antialias else 1,
                                 1), norm(ndf * mult), nn.LeakyReLU(0.2, True)]
            layers += [Blur(ndf * mult)] if down and antialias else []
        layers.append(nn.Conv2d(ndf * 8, 1, 4, 1, 1))
        return nn.Sequential(*layers)

    return generator, discriminator


def build_cycle_gan(torch):
    """The reference's CycleGAN networks: two resnet_9blocks generators, two basic PatchGANs."""
    nn = torch.nn
    generator, discriminator = resnet_networks(torch)
    nets = [generator(), generator(), discriminator(), discriminator()]
    for net in nets:
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
    return nets


def cycle_gan_step(torch):
    """One reference CycleGAN iteration (LSGAN, cycle 10, identity 0.5; pools left out: they
    only copy images)."""
    import itertools

    G_A, G_B, D_A, D_B = build_cycle_gan(torch)
    for net in (G_A, G_B, D_A, D_B):
        net.train()
    opt_g = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4,
                             betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4,
                             betas=(0.5, 0.999))
    mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()
    real_a = torch.rand(1, 3, 256, 256) * 2 - 1
    real_b = torch.rand(1, 3, 256, 256) * 2 - 1

    def gan(pred, target):
        return mse(pred, torch.full_like(pred, float(target)))

    def step():
        fake_b = G_A(real_a)
        rec_a = G_B(fake_b)
        fake_a = G_B(real_b)
        rec_b = G_A(fake_a)
        for p in itertools.chain(D_A.parameters(), D_B.parameters()):
            p.requires_grad_(False)
        opt_g.zero_grad()
        loss_g = (l1(G_A(real_b), real_b) * 10 * 0.5 + l1(G_B(real_a), real_a) * 10 * 0.5
                  + gan(D_A(fake_b), 1) + gan(D_B(fake_a), 1)
                  + l1(rec_a, real_a) * 10 + l1(rec_b, real_b) * 10)
        loss_g.backward()
        opt_g.step()
        for p in itertools.chain(D_A.parameters(), D_B.parameters()):
            p.requires_grad_(True)
        opt_d.zero_grad()
        for D, real, fake in ((D_A, real_b, fake_b), (D_B, real_a, fake_a)):
            loss_d = 0.5 * (gan(D(real), 1) + gan(D(fake.detach()), 0))
            loss_d.backward()
        opt_d.step()
        return float(loss_g)

    return step


def main(argv):
    del argv
    import time

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(FLAGS.threads or os.cpu_count())
    # The PyTorch re-implementations of the reference's steps, by the --model they match.
    step = {"pix2pix": pix2pix_step, "cycle_gan": cycle_gan_step, "cut": cut_step,
            "pix2pix_hd": pix2pix_hd_step}[FLAGS.model](torch)
    for _ in range(FLAGS.warmup):
        step()
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)

    from benchmarks.common import machine, report, summary

    stats = summary(times)
    # A step may name its variant (cut/fastcut).
    model = getattr(step, "label", FLAGS.model)
    result = {"benchmark": "torch_reference_step", "model": model,
              "torch": torch.__version__,
              "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": torch.get_num_threads(), **stats, **machine()}
    report(result, [
        (f"PyTorch {model} step", f"{stats['median_s']:.3f} s median, min "
                                        f"{stats['min_s']:.3f} ({FLAGS.steps} steps, batch 1, "
                                        f"{getattr(step, 'size', '256x256')})"),
        ("ATen CPU capability", result["aten_cpu_capability"]),
    ])


def pix2pix_step(torch):
    """One reference pix2pix iteration (see the module docstring)."""
    G, D = build(torch)
    G.train()
    D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce, l1 = torch.nn.BCEWithLogitsLoss(), torch.nn.L1Loss()
    real_a = torch.rand(1, 3, 256, 256) * 2 - 1
    real_b = torch.rand(1, 3, 256, 256) * 2 - 1

    def step():
        fake_b = G(real_a)
        for p in D.parameters():
            p.requires_grad_(True)
        opt_d.zero_grad()
        pred_fake = D(torch.cat([real_a, fake_b.detach()], 1))
        pred_real = D(torch.cat([real_a, real_b], 1))
        loss_d = 0.5 * (bce(pred_fake, torch.zeros_like(pred_fake))
                        + bce(pred_real, torch.ones_like(pred_real)))
        loss_d.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        opt_g.zero_grad()
        pred_fake = D(torch.cat([real_a, fake_b], 1))
        loss_g = bce(pred_fake, torch.ones_like(pred_fake)) + 100.0 * l1(fake_b, real_b)
        loss_g.backward()
        opt_g.step()
        return float(loss_g)

    return step


def cut_step(torch):
    """One reference CUT / FastCUT iteration (see the module docstring)."""
    import random

    nn = torch.nn
    fast = FLAGS.cut_mode == "fastcut"
    generator, discriminator = resnet_networks(torch, antialias=True)
    G, D = generator(), discriminator()
    nce_layers = [0, 4, 8, 12, 16]
    mlps = nn.ModuleList([nn.Sequential(nn.Linear(c, 256), nn.ReLU(), nn.Linear(256, 256))
                          for c in (3, 128, 256, 256, 256)])
    for net in (G, D, mlps):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight, gain=0.02)
                nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_f = torch.optim.Adam(mlps.parameters(), lr=2e-4, betas=(0.5, 0.999))
    mse = nn.MSELoss()
    ce = nn.CrossEntropyLoss(reduction="none")
    real_a = torch.rand(1, 3, 256, 256) * 2 - 1
    real_b = torch.rand(1, 3, 256, 256) * 2 - 1

    def encode(x):
        feats = []
        for i, layer in enumerate(G):
            x = layer(x)
            if i in nce_layers:
                feats.append(x)
            if i == nce_layers[-1]:
                return feats

    def project(feats, ids=None):
        out, new_ids = [], []
        for i, f in enumerate(feats):
            flat = f.permute(0, 2, 3, 1).flatten(1, 2)
            pid = ids[i] if ids is not None else torch.randperm(flat.shape[1])[:256]
            x = mlps[i](flat[:, pid, :].flatten(0, 1))
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-7))
            new_ids.append(pid)
        return out, new_ids

    def nce(src, tgt, flipped):
        q = encode(tgt)
        if flipped:
            q = [torch.flip(f, [3]) for f in q]
        k_pool, ids = project(encode(src))
        q_pool, _ = project(q, ids)
        total = 0.0
        for fq, fk in zip(q_pool, k_pool):
            fk = fk.detach()
            pos = (fq * fk).sum(1, keepdim=True)
            neg = torch.bmm(fq.view(1, -1, 256), fk.view(1, -1, 256).transpose(2, 1))
            neg = neg.masked_fill(torch.eye(neg.shape[1], dtype=torch.bool)[None], -10.0)
            out = torch.cat([pos, neg.view(-1, neg.shape[1])], 1) / 0.07
            total = total + ce(out, torch.zeros(out.shape[0], dtype=torch.long)).mean() * (
                10.0 if fast else 1.0)
        return total / len(nce_layers)

    def step():
        real = real_a if fast else torch.cat([real_a, real_b], 0)
        flipped = fast and random.random() < 0.5
        if flipped:
            real = torch.flip(real, [3])
        fake = G(real)
        fake_b = fake[:1]
        for p in D.parameters():
            p.requires_grad_(True)
        opt_d.zero_grad()
        pred_fake, pred_real = D(fake_b.detach()), D(real_b)
        loss_d = 0.5 * (mse(pred_fake, torch.zeros_like(pred_fake))
                        + mse(pred_real, torch.ones_like(pred_real)))
        loss_d.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        opt_g.zero_grad()
        opt_f.zero_grad()
        pred = D(fake_b)
        loss_g = mse(pred, torch.ones_like(pred)) + (
            nce(real_a, fake_b, flipped) if fast
            else 0.5 * (nce(real_a, fake_b, False) + nce(real_b, fake[1:], False)))
        loss_g.backward()
        opt_g.step()
        opt_f.step()
        return float(loss_g)

    step.label = f"cut/{FLAGS.cut_mode}"
    return step


def pix2pix_hd_step(torch):
    """One NVIDIA/pix2pixHD iteration (see the module docstring)."""
    nn = torch.nn
    generator, _ = resnet_networks(torch)
    G = generator(64, input_nc=36, n_down=4, n_blocks=9)

    def patchgan():
        layers, nf = [nn.Sequential(nn.Conv2d(39, 64, 4, 2, 2), nn.LeakyReLU(0.2, True))], 64
        for n in range(1, 4):
            prev, nf = nf, min(nf * 2, 512)
            layers.append(nn.Sequential(nn.Conv2d(prev, nf, 4, 2 if n < 3 else 1, 2),
                                        nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2, True)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        return nn.ModuleList(layers)

    Ds = nn.ModuleList([patchgan(), patchgan()])
    pool = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
    vgg_layers, c = [], 3
    for v in cfg:
        if v == "M":
            vgg_layers.append(nn.MaxPool2d(2, 2))
        else:
            vgg_layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(True)]
            c = v
    vgg = nn.Sequential(*vgg_layers)
    for p in vgg.parameters():
        p.requires_grad_(False)
    taps = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1

    def vgg_features(x):
        out = []
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in taps:
                out.append(x)
            if i == taps[-1]:
                return out

    for net in (G, Ds):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(Ds.parameters(), lr=2e-4, betas=(0.5, 0.999))
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    h = FLAGS.height
    labels = torch.randint(0, 35, (1, 1, h, 2 * h))
    label = torch.zeros(1, 35, h, 2 * h).scatter_(1, labels, 1.0)
    label = torch.cat([label, (torch.rand(1, 1, h, 2 * h) < 0.05).float()], 1)
    real = torch.rand(1, 3, h, 2 * h) * 2 - 1

    def discriminate(x):
        result = []
        for i, D in enumerate(Ds):
            if i:
                x = pool(x)
            outs = []
            for layer in D:
                outs.append(layer(outs[-1] if outs else x))
            result.append(outs)
        return result

    def gan(preds, target):
        return sum(mse(p[-1], torch.full_like(p[-1], float(target))) for p in preds)

    def step():
        fake = G(label)
        pred_fake_pool = discriminate(torch.cat([label, fake.detach()], 1))
        pred_real = discriminate(torch.cat([label, real], 1))
        pred_fake = discriminate(torch.cat([label, fake], 1))
        loss_d = 0.5 * (gan(pred_fake_pool, 0) + gan(pred_real, 1))
        feat = sum(0.5 * 1.0 * 10 * l1(f, r.detach())
                   for pf, pr in zip(pred_fake, pred_real) for f, r in zip(pf[:-1], pr[:-1]))
        fv, rv = vgg_features(fake), vgg_features(real)
        loss_vgg = 10 * sum(w * l1(f, r.detach()) for w, f, r in
                            zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), fv, rv))
        loss_g = gan(pred_fake, 1) + feat + loss_vgg
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        return float(loss_g)

    step.label = "pix2pix_hd"
    step.size = f"{2 * h}x{h}"
    return step


if __name__ == "__main__":
    app.run(main)
