"""The network's forward pass replayed as a CUDA graph, one graph per input shape.

At batch 1 the paper's B is launch-bound: hundreds of small kernels whose launches cost
more than their arithmetic (issue 16: 16-23 ms eager, 8.1-8.7 ms replayed). A sampling
step has a fixed shape, so its forward is captured once and replayed at every step; the
graphs are cached by shape, so the widget's second run (and every later one) replays
without capturing again. Anywhere but CUDA the wrapper simply calls the network.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Key = tuple


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    x_t: torch.Tensor
    t: torch.Tensor
    condition: torch.Tensor
    output: torch.Tensor
    source: torch.Tensor | None = None  # the condition last copied in (copied once per run)


class GraphedForward:
    """Call ``model(x_t, t, condition=condition)``, replaying a CUDA graph where it can.

    ``context`` returns the context the forward runs under (inference mode, autocast:
    sampling never needs gradients); it is entered for capture as well. With
    ``enabled=False``, or off CUDA, it calls the network under that context and captures
    nothing. At most ``max_graphs`` shapes are kept (least recently used first out), each
    with its own static buffers.

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> model = MedSegDiffUNet(named_config("tiny")).eval()
    >>> forward = GraphedForward(model, torch.inference_mode)
    >>> x_t, image = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    >>> with torch.inference_mode():
    ...     condition = model.encode_condition(image)
    >>> out = forward(x_t, torch.tensor([3, 7]), condition)
    >>> out.shape, forward.captured_shapes()  # on the CPU: the plain forward, nothing captured
    (torch.Size([2, 1, 32, 32]), [])
    """

    def __init__(
        self,
        model: nn.Module,
        context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        max_graphs: int = 4,
        warmup: int = 2,
        enabled: bool = True,
    ) -> None:
        self.model, self.context, self.enabled = model, context, enabled
        self.max_graphs, self.warmup = max_graphs, warmup
        self._graphs: OrderedDict[Key, _Captured] = OrderedDict()

    def captured_shapes(self) -> list[Key]:
        return list(self._graphs)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if not self.enabled or x_t.device.type != "cuda":
            with self.context():
                return self.model(x_t, t, condition=condition)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        key = (tuple(x_t.shape), x_t.dtype, tuple(t.shape), t.dtype, tuple(condition.shape), condition.dtype)
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(key, x_t, t, condition)
        self._graphs.move_to_end(key)
        captured.x_t.copy_(x_t)
        captured.t.copy_(t)
        if captured.source is not condition:
            captured.condition.copy_(condition)
            captured.source = condition
        captured.graph.replay()
        return captured.output.clone()  # the static output is overwritten by the next replay

    def _capture(self, key: Key, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> _Captured:
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        static_x, static_t, static_c = x_t.clone(), t.clone(), condition.clone()
        stream = torch.cuda.Stream(device=x_t.device)
        stream.wait_stream(torch.cuda.current_stream(x_t.device))
        with torch.cuda.stream(stream), self.context():
            for _ in range(self.warmup):  # cuDNN picks its algorithms outside the capture
                self.model(static_x, static_t, condition=static_c)
        torch.cuda.current_stream(x_t.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.context():
            output = self.model(static_x, static_t, condition=static_c)
        captured = _Captured(graph, static_x, static_t, static_c, output, source=condition)
        self._graphs[key] = captured
        return captured
