"""Train one run exactly as ``ntm train`` does while recording what might make it collapse.

Each update adds a line to ``OUT/probe.jsonl``: the loss, the gradient's global norm before
clipping and the fraction of its components the +-10 clip cut, the norm of the update the
optimiser made, and RMSProp's state (the centred second moment ``v - m^2`` that divides the
step, as quantiles over all components, and the smallest denominator ``sqrt(v - m^2 + eps)``).
Every ``--every`` updates it also runs the model on a fixed probe batch and records the heads:
the key strength beta and the sharpening gamma (mean and max), how peaked the weightings are
(the mean of each weighting's largest entry) and the memory's largest magnitude; an update that
``optim.skip_above`` skipped says so (``"skipped": true``, with its norm). The training
itself is untouched (the same seeds, data and updates as ``ntm train TASK --seed S``), so a
collapse seen in a sweep happens again here, at the same step::

    python results/scripts/collapse_probe.py copy --seed 3 --out runs/probe-copy-seed3
    python results/scripts/collapse_probe.py copy --preset large-batch --seed 2 --steps 200 \
        --out runs/probe/copy-lb-seed2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import ntm
from ntm.training import loop
from ntm.training.optim import gradient_norm

QUANTILES = (0.01, 0.5, 0.99)


class Probe:
    """Records one line per update into ``path``; see the module docstring."""

    def __init__(self, path: Path, task, every: int, clip_value: float = 10.0):
        self.file = path.open("w")
        self.every, self.step, self.clip_value = every, 0, clip_value
        self.batch = task.sample(16, torch.Generator().manual_seed(12345))
        self.record: dict = {}

    def before_clip(self, parameters) -> None:
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        self.record.update(grad_norm=float(flat.norm()),
                           clipped_fraction=float((flat.abs() > self.clip_value).float().mean()))

    def after_step(self, model, optimizer, before: list[torch.Tensor], loss: float) -> None:
        after = [p.detach() for p in model.parameters()]
        update = torch.cat([(a - b).flatten() for a, b in zip(after, before, strict=True)])
        self.record.update(step=self.step, loss_nats=loss, update_norm=float(update.norm()),
                           update_max=float(update.abs().max()), **self._rmsprop(optimizer))
        if self.step % self.every == 0:
            self.record.update(self._heads(model))
        self.file.write(json.dumps(self.record) + "\n")
        self.file.flush()
        self.record, self.step = {}, self.step + 1

    @staticmethod
    def _rmsprop(optimizer) -> dict:
        group = optimizer.param_groups[0]
        variances = []
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            if "square_avg" in state:
                variance = state["square_avg"]
                if "grad_avg" in state:  # centred: what divides the step
                    variance = variance - state["grad_avg"] ** 2
                variances.append(variance.flatten())
        if not variances:
            return {}
        flat = torch.cat(variances).double()
        quantiles = torch.quantile(flat, torch.tensor(QUANTILES, dtype=torch.float64))
        eps = group["eps"]
        return {"variance_q": [float(q) for q in quantiles],
                # torch's centred RMSprop divides by sqrt(v - m^2) + eps, eps outside the root.
                "min_denominator": float((flat.clamp_min(0).sqrt() + eps).min()),
                "lr": group["lr"]}

    @torch.no_grad()
    def _heads(self, model) -> dict:
        cell = model.cell
        _, state, trace = model.trace(self.batch.inputs)
        raw = []  # the head parameters of every step, from the controller outputs

        def keep(module, inputs, output):
            raw.append(output)

        hook = cell.interface.register_forward_hook(keep)
        try:
            model(self.batch.inputs)
        finally:
            hook.remove()
        parameters = [cell.access.layout.activate(r) for r in raw]
        beta = torch.stack([p.key_strengths for p in parameters])
        gamma = torch.stack([p.sharpening for p in parameters])
        weights = torch.cat([trace.read_weights, trace.write_weights], dim=2)
        return {"beta_mean": float(beta.mean()), "beta_max": float(beta.max()),
                "gamma_mean": float(gamma.mean()), "gamma_max": float(gamma.max()),
                "peak_weight": float(weights.max(-1).values.mean()),
                "memory_max": float(state.memory.abs().max())}


def run(config, out: Path, every: int) -> None:
    """``ntm.training.train(config, out)`` with the probe wrapped round each update."""
    task = ntm.training.build_task(config.task)
    out.mkdir(parents=True, exist_ok=True)
    probe = Probe(out / "probe.jsonl", task, every, config.optim.clip_value)
    original_update, original_clip = loop._update, loop.clip_gradients

    def clip(parameters, optim_config):
        parameters = list(parameters)
        probe.before_clip(parameters)
        return original_clip(parameters, optim_config)

    def update(model, optimizer, parameters, batch, run_config, world, recent_norms=None):
        before = [p.detach().clone() for p in model.parameters()]
        loss, skipped = original_update(model, optimizer, parameters, batch, run_config, world,
                                        recent_norms)
        if skipped:  # not clipped, so not measured there (optim.skip_above)
            probe.record.update(skipped=True, grad_norm=gradient_norm(parameters))
        probe.after_step(model, optimizer, before, loss)
        return loss, skipped

    loop._update, loop.clip_gradients = update, clip
    try:
        ntm.training.train(config, out / "run", progress=False)
    finally:
        loop._update, loop.clip_gradients = original_update, original_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--model", default="ntm-lstm")
    parser.add_argument("--preset", default="fast", choices=ntm.training.presets.PRESETS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--every", type=int, default=25, help="updates between head probes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = ntm.training.preset_config(args.task, args.model, args.preset)
    overrides = [f"train.seed={args.seed}", *args.set]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    run(ntm.training.apply_overrides(config, overrides), args.out, args.every)


if __name__ == "__main__":
    main()
