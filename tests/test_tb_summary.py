"""benchmarks/tb_summary.py: values of TensorBoard tags at the end, at a step, and averaged over a window."""

import importlib.util
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[1]


def load_tb_summary():
    spec = importlib.util.spec_from_file_location("tb_summary", ROOT / "benchmarks" / "tb_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_last_value_value_at_a_step_and_window_mean(tmp_path):
    tb_summary = load_tb_summary()
    run = tmp_path / "run"
    # two event files, as a resumed run writes: steps 100..500 then 600..800, value = step / 100
    for steps in ((100, 200, 300, 400, 500), (600, 700, 800)):
        writer = SummaryWriter(str(run / "tb" / f"part{steps[0]}"))
        for step in steps:
            writer.add_scalar("cpc/accuracy_k1", step / 100, step)
        writer.close()
    tags = ["cpc/accuracy_k1", "cpc/missing"]
    assert tb_summary.last_values(run, tags) == {"cpc/accuracy_k1": 8.0}
    assert tb_summary.last_values(run, tags, at=650) == {"cpc/accuracy_k1": 6.0}
    assert tb_summary.last_values(run, tags, at=650, window=300) == {"cpc/accuracy_k1": 5.0}  # 400, 500, 600
    assert tb_summary.last_values(run, tags, at=50) == {}
