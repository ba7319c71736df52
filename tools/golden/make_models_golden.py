"""Golden fixtures for simsiam-models and simsiam-loss.

Builds SimSiam models in PyTorch with the same structure and parameter names as the Rust
crates (torchvision's ResNet blocks and names, Lightly's head layout), runs one training step
(two views, forward, symmetric negative-cosine loss, backward) and writes weights, inputs,
outputs, the loss, every parameter gradient and the updated BatchNorm running statistics to
safetensors files that the Rust tests compare against.

Run from the repository root (CPU is enough; takes a few seconds):

    python3 -m venv .venv && .venv/bin/pip install -r tools/golden/requirements.txt
    .venv/bin/python tools/golden/make_models_golden.py

Outputs:
    crates/simsiam-models/tests/fixtures/step_*.safetensors
    crates/simsiam-models/tests/fixtures/torchvision_resnet18_f16.safetensors
    crates/simsiam-models/tests/fixtures/torchvision_resnet18_io.safetensors
    crates/simsiam-loss/tests/fixtures/losses.safetensors
"""

import copy
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "crates", "simsiam-models", "tests", "fixtures")
LOSS = os.path.join(ROOT, "crates", "simsiam-loss", "tests", "fixtures")

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


class ResNet(nn.Module):
    """torchvision's ResNet with a configurable width and stem, classifier removed.

    Attribute names equal torchvision's (conv1, bn1, layer1.0.conv1, ...downsample.0), and the
    blocks are torchvision's own BasicBlock and Bottleneck classes.
    """

    def __init__(self, block, layers, width, stem, zero_init_residual=False):
        super().__init__()
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class Head(nn.Module):
    """Lightly's ProjectionHead: an nn.Sequential under the attribute `layers`."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def projection_head(input_dim, hidden_dim, output_dim, num_layers=3, last_bn_affine=False):
    """Lightly's SimSiamProjectionHead layout: Linear(no bias), BN, ReLU, ..., Linear, BN."""
    layers = []
    for i in range(num_layers):
        last = i + 1 == num_layers
        fan_in = input_dim if i == 0 else hidden_dim
        fan_out = output_dim if last else hidden_dim
        layers.append(nn.Linear(fan_in, fan_out, bias=False))
        layers.append(nn.BatchNorm1d(fan_out, affine=(not last) or last_bn_affine))
        if not last:
            layers.append(nn.ReLU())
    return Head(*layers)


def prediction_head(input_dim, hidden_dim, output_dim):
    """Lightly's SimSiamPredictionHead layout: Linear(no bias), BN, ReLU, Linear(bias)."""
    return Head(
        nn.Linear(input_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, output_dim),
    )


class SimSiam(nn.Module):
    def __init__(self, backbone, proj, pred):
        super().__init__()
        self.backbone = backbone
        self.projection_head = proj
        self.prediction_head = pred

    def forward(self, x):
        f = self.backbone(x)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        return z.detach(), p


def neg_cos(p, z):
    return -F.cosine_similarity(p, z, dim=1, eps=1e-8).mean()


def buffers(model):
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.endswith("running_mean") or k.endswith("running_var")
    }


def randomise_batch_norms(model):
    """BN weights and biases away from 1 and 0, so that a misplaced scale or shift shows."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


RELU_MARGIN = 1e-5


def clear_relu_seed(model, batch, size, dtype):
    """The first input seed from 1234 on whose training forward passes keep every ReLU input
    at least RELU_MARGIN away from zero. A value within rounding of zero makes the ReLU mask,
    and so the gradients, depend on how a kernel rounds (a different but equally exact
    convolution flips it), which no tolerance on the gradients can absorb."""
    for seed in range(1234, 1334):
        trial = copy.deepcopy(model).train()
        smallest = []
        hooks = [
            m.register_forward_pre_hook(lambda _m, inp: smallest.append(inp[0].abs().min().item()))
            for m in trial.modules()
            if isinstance(m, nn.ReLU)
        ]
        g = torch.Generator().manual_seed(seed)
        x0 = torch.randn(batch, 3, size, size, generator=g).to(dtype)
        x1 = torch.randn(batch, 3, size, size, generator=g).to(dtype)
        with torch.no_grad():
            trial(x0)
            trial(x1)
        for h in hooks:
            h.remove()
        if min(smallest) >= RELU_MARGIN:
            return seed
    raise SystemExit("no input seed keeps the ReLU inputs clear of zero")


def step_fixture(name, model, batch, size, dtype=torch.float32):
    """One training step on two views; everything the Rust test compares."""
    randomise_batch_norms(model)
    model = model.to(dtype)
    seed = clear_relu_seed(model, batch, size, dtype)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 3, size, size, generator=g).to(dtype)
    x1 = torch.randn(batch, 3, size, size, generator=g).to(dtype)
    # Non-trivial running statistics, so the eval-mode forward checks them too.
    model.train()
    with torch.no_grad():
        model((torch.randn(batch, 3, size, size, generator=g) * 1.5 + 0.3).to(dtype))
    out = {}
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            out["w." + k] = v.detach().clone()
    out["x0"], out["x1"] = x0, x1
    model.zero_grad()
    z0, p0 = model(x0)
    z1, p1 = model(x1)
    loss = 0.5 * (neg_cos(p0, z1) + neg_cos(p1, z0))
    loss.backward()
    out.update(z0=z0, z1=z1, p0=p0.detach(), p1=p1.detach(), loss=loss.detach().reshape(1))
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad.detach().clone()
    for k, v in buffers(model).items():
        out["after." + k] = v
    model.eval()
    with torch.no_grad():
        z_eval, p_eval = model(x0)
        out["eval.f0"] = model.backbone(x0)
    out["eval.z0"], out["eval.p0"] = z_eval, p_eval
    path = os.path.join(MODELS, f"step_{name}.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print(f"{path}: {sum(v.numel() for v in out.values())} values, input seed {seed}, loss {loss.item():.6f}")


def torchvision_resnet18():
    """The real torchvision resnet18, its state dict stored in f16 to keep the fixture small."""
    torch.manual_seed(7)
    model = torchvision.models.resnet18()
    g = torch.Generator().manual_seed(99)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 64, 64, generator=g))
        # Round every float tensor to f16 in place, so the model computes with exactly the
        # weights that the fixture stores.
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_file(state, os.path.join(MODELS, "torchvision_resnet18_f16.safetensors"))
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        backbone = nn.Sequential(*list(model.children())[:-1])
        features = backbone(x).flatten(1)
    save_file({"x": x, "features": features}, os.path.join(MODELS, "torchvision_resnet18_io.safetensors"))
    print("torchvision resnet18:", len(state), "tensors")


def loss_fixture():
    g = torch.Generator().manual_seed(5)
    out = {}
    p = torch.randn(6, 10, generator=g, requires_grad=True)
    z = torch.randn(6, 10, generator=g, requires_grad=True)
    out["p"], out["z"] = p.detach().clone(), z.detach().clone()
    ncs = neg_cos(p, z)
    ncs.backward()
    out["neg_cos"] = ncs.detach().reshape(1)
    out["neg_cos.grad_p"], out["neg_cos.grad_z"] = p.grad.clone(), z.grad.clone()
    p.grad = None
    z.grad = None
    sce = -(F.softmax(z, dim=1) * F.log_softmax(p, dim=1)).sum(dim=1).mean()
    sce.backward()
    out["sce"] = sce.detach().reshape(1)
    out["sce.grad_p"], out["sce.grad_z"] = p.grad.clone(), z.grad.clone()
    normed = F.normalize(z.detach(), dim=1)
    out["collapse_std"] = torch.std(normed, 0).mean().reshape(1)
    os.makedirs(LOSS, exist_ok=True)
    save_file(out, os.path.join(LOSS, "losses.safetensors"))
    print("losses:", {k: v.item() for k, v in out.items() if v.numel() == 1})


def main():
    os.makedirs(MODELS, exist_ok=True)
    torch.manual_seed(0)
    r18 = ResNet(BasicBlock, [2, 2, 2, 2], width=8, stem="imagenet")
    step_fixture("resnet18_imagenet", SimSiam(r18, projection_head(64, 64, 32), prediction_head(32, 16, 32)), 8, 32)
    torch.manual_seed(1)
    r18c = ResNet(BasicBlock, [2, 2, 2, 2], width=8, stem="cifar")
    proj = projection_head(64, 48, 24, num_layers=2, last_bn_affine=True)
    step_fixture("resnet18_cifar", SimSiam(r18c, proj, prediction_head(24, 12, 24)), 8, 16)
    # A bottleneck network shallow enough for PyTorch's own float32 gradients to stay within
    # 1e-5 of float64 ones (a width-4 ResNet-50's drift by 3e-4, so it is checked in float64).
    torch.manual_seed(2)
    bottleneck = ResNet(Bottleneck, [1, 1, 1, 1], width=8, stem="cifar")
    step_fixture("bottleneck_cifar", SimSiam(bottleneck, projection_head(256, 64, 32), prediction_head(32, 16, 32)), 8, 16)
    torch.manual_seed(3)
    r50 = ResNet(Bottleneck, [3, 4, 6, 3], width=4, stem="cifar")
    step_fixture(
        "resnet50_cifar_f64",
        SimSiam(r50, projection_head(128, 64, 32), prediction_head(32, 16, 32)),
        4,
        16,
        dtype=torch.float64,
    )
    torchvision_resnet18()
    loss_fixture()


if __name__ == "__main__":
    main()
