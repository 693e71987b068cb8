"""`python -m gendd_hf.bench.teacher_outputs_speed` runs end to end at a tiny size and reports what the README quotes
(it once could not start: an import of a function that no longer existed went unnoticed without this test)."""

import json

import pytest

from gendd_hf.bench import teacher_outputs_speed


@pytest.mark.slow
def test_the_benchmark_runs_and_reports_both_methods(tmp_path, capsys):
    argv = [
        "--teacher",
        "resnet10t",
        "--batch_size",
        "8",
        "--warmup_steps",
        "1",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--num_views",
        "1",
        "--shuffle_buffer_size",
        "16",
        "--output_json",
        str(tmp_path / "speed.json"),
    ]
    results = teacher_outputs_speed.main(argv)
    assert json.loads((tmp_path / "speed.json").read_text())["flop_ratio"] == pytest.approx(results["flop_ratio"])
    assert set(results["steps_per_second"]) == {"gendd", "kd"}
    for speeds in results["steps_per_second"].values():
        assert speeds["online"] > 0 and speeds["streamed"] > 0
        assert speeds["speedup"] == pytest.approx(speeds["streamed"] / speeds["online"])
    assert results["teacher_forward_mflops"] > results["student_forward_mflops"] > 0
    assert results["bytes_per_image_per_view"] > 0
    assert "| kd |" in capsys.readouterr().out
