"""Forward+backward time and peak memory of the vectorised InfoNCE loss against a loop over k.

The reference below is the straightforward implementation: for each k, predict, score the positive and
the same negatives, cross-entropy, accuracy. Both use the same sampled negative indices, so they compute
the same loss, which this script checks before timing.

    python benchmarks/infonce.py                      # B=32, T=100, K=30, D=256, 128 batch negatives, CPU
    python benchmarks/infonce.py --device cuda

Peak memory on CPU is the growth of the peak resident set while one step runs in a fresh child process
(one per implementation, started before the parent allocates anything large); on CUDA it is
``torch.cuda.max_memory_allocated`` above the inputs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch
from torch.nn import functional as F

from cpc_rl.losses import InfoNCELoss
from cpc_rl.negatives import sample_negatives


def reference_infonce(context, latents, predictors, negative_index):
    """Loop over k: the textbook InfoNCE with batch negatives (indices shared with the vectorised loss)."""
    batch, steps, dim = latents.shape
    flat = latents.reshape(batch * steps, dim)
    losses, accuracies = [], []
    for k in range(1, predictors.shape[0] + 1):
        prediction = context[:, : steps - k] @ predictors[k - 1].T  # (B, T-k, D)
        target = latents[:, k:]  # (B, T-k, D)
        negatives = flat[negative_index[:, k:]]  # (B, T-k, N, D)
        positive = (prediction * target).sum(-1, keepdim=True)
        negative = torch.einsum("btd,btnd->btn", prediction, negatives)
        logits = torch.cat([positive, negative], dim=-1).reshape(-1, 1 + negative.shape[-1])
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        losses.append(F.cross_entropy(logits, labels))
        accuracies.append((logits[:, 0] > logits[:, 1:].max(-1).values).float().mean())
    return torch.stack(losses).mean(), torch.stack(accuracies)


def make_inputs(args, device):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(args.batch, args.steps, args.dim, generator=generator).to(device).requires_grad_(True)
    context = torch.randn(args.batch, args.steps, args.dim, generator=generator).to(device).requires_grad_(True)
    loss = InfoNCELoss(args.dim, args.dim, args.steps_ahead, negatives="batch", n_negatives=args.negatives).to(device)
    return latents, context, loss


def step(name, latents, context, loss, seed):
    """One forward+backward; both implementations draw the same negatives from ``seed``."""
    generator = torch.Generator(device=latents.device).manual_seed(seed)
    if name == "vectorised":
        value = loss(context, latents, generator=generator).loss
    else:
        valid = torch.ones(latents.shape[:2], dtype=torch.bool, device=latents.device)
        index = sample_negatives("batch", loss.n_negatives, valid, generator=generator).index
        value, _ = reference_infonce(context, latents, loss.predictors, index)
    value.backward()
    return value.item()


def time_both(args, device):
    latents, context, loss = make_inputs(args, device)
    for name in ("vectorised", "reference"):  # warm-up
        step(name, latents, context, loss, 0)
    times = {"vectorised": [], "reference": []}
    for repeat in range(args.repeats):  # alternate, so both see the same machine state
        for name in times:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(name, latents, context, loss, repeat)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _peak_child(name, args, device_name, queue):
    device = torch.device(device_name)
    latents, context, loss = make_inputs(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(name, latents, context, loss, 0)
        queue.put(torch.cuda.max_memory_allocated() - base)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(name, latents, context, loss, 0)
        queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)


def peak_memory(name, args, device_name):
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_child, args=(name, args, device_name, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--steps-ahead", type=int, default=30)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--negatives", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # Memory first: a child's peak RSS starts from its parent's (Linux keeps ru_maxrss across fork and
    # exec), so the parent must not have allocated the big tensors yet.
    peaks = {name: peak_memory(name, args, args.device) for name in ("vectorised", "reference")}

    latents, context, loss = make_inputs(args, device)
    with torch.no_grad():
        generator = torch.Generator(device=device).manual_seed(7)
        vectorised = loss(context, latents, generator=generator)
        generator = torch.Generator(device=device).manual_seed(7)
        index = sample_negatives("batch", args.negatives, torch.ones(args.batch, args.steps, dtype=torch.bool, device=device), generator=generator).index
        reference, reference_accuracy = reference_infonce(context, latents, loss.predictors, index)
    agree = torch.allclose(vectorised.loss, reference, rtol=1e-4) and torch.allclose(
        vectorised.accuracy_per_step, reference_accuracy, atol=1e-6
    )
    print(f"InfoNCE B={args.batch} T={args.steps} K={args.steps_ahead} D={args.dim} negatives=batch x{args.negatives} "
          f"device={device} threads={torch.get_num_threads()}")
    print(f"same loss: {agree} (vectorised {vectorised.loss.item():.5f}, reference {reference.item():.5f})")
    if not agree:
        raise SystemExit("the two implementations disagree: fix that before timing them")

    times = time_both(args, device)
    for name in ("vectorised", "reference"):
        print(f"{name:>11}: forward+backward {times[name] * 1000:8.1f} ms (median of {args.repeats}), "
              f"peak extra memory {peaks[name] / 2**20:8.1f} MiB")
    print(f"speed-up (reference / vectorised): {times['reference'] / times['vectorised']:.2f}x")
    print(f"memory ratio (vectorised / reference): {peaks['vectorised'] / max(peaks['reference'], 1):.2f}")


if __name__ == "__main__":
    main()
