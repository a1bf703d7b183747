"""The anchor for a training iteration's cost: SSN's feature CNN trained in PyTorch.

Run by ``ssn-bench-train --torch-python PYTHON`` with an interpreter that has PyTorch
(a separate venv: PyTorch is never a dependency of this project). It imports
nothing of ours, builds the same CNN as ``ssn.nets.generators.cnn_features`` (3x3
convolutions of 64 channels with BatchNorm and ReLU in three scales, two 3x3
stride-2 max pools, align-corners bilinear upsampling back to the input size, a
3x3 convolution of the concatenation to the learned channels, the input channels
kept in front), and times forward, backward and an Adam step on random patches on
the CPU in both memory layouts, NCHW and channels-last (which is faster depends on
the PyTorch build and the CPU), and reports the faster. Prints one JSON line: the
medians in seconds, and the layout they came from.

    python torch_anchor.py [--batch 6] [--patch 201] [--repeats 5]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional


def conv_bn_relu(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True))


class FeatureCNN(nn.Module):
    """Input N x C x H x W pixel features; output N x (C + learned) x H x W."""

    def __init__(self, channels: int = 5, width: int = 64, learned: int = 15):
        super().__init__()
        self.scale1 = nn.Sequential(conv_bn_relu(channels, width), conv_bn_relu(width, width))
        self.scale2 = nn.Sequential(conv_bn_relu(width, width), conv_bn_relu(width, width))
        self.scale3 = nn.Sequential(conv_bn_relu(width, width), conv_bn_relu(width, width))
        self.head = nn.Conv2d(channels + 3 * width, learned, 3, padding=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        size = pixels.shape[-2:]
        fine = self.scale1(pixels)
        middle = self.scale2(functional.max_pool2d(fine, 3, 2, 1))
        coarse = self.scale3(functional.max_pool2d(middle, 3, 2, 1))

        def upsampled(blob):
            return functional.interpolate(blob, size=size, mode="bilinear", align_corners=True)

        stacked = torch.cat([pixels, fine, upsampled(middle), upsampled(coarse)], 1)
        return torch.cat([pixels, functional.relu(self.head(stacked))], 1)


def time_training(batch: int, patch: int, repeats: int, channels_last: bool) -> dict:
    """Median forward and backward+Adam seconds over ``repeats`` steps after a warm-up."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = FeatureCNN().to(memory_format=layout)
    optimiser = torch.optim.Adam(net.parameters(), 1e-4)
    pixels = torch.randn(batch, 5, patch, patch).to(memory_format=layout)
    forward, backward = [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        loss = net(pixels).square().mean()
        middle = time.perf_counter()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return {"layout": "channels-last" if channels_last else "NCHW",
            "forward": statistics.median(forward[1:]),
            "backward": statistics.median(backward[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--patch", type=int, default=201)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    timings = [time_training(args.batch, args.patch, args.repeats, channels_last)
               for channels_last in (False, True)]
    fastest = min(timings, key=lambda t: t["forward"] + t["backward"])
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      **fastest}))


if __name__ == "__main__":
    main()
