"""The speed benchmarks of issue 25 run end to end at tiny sizes on the CPU and report what docs/performance.md
quotes: the training step's parts and FLOP ratio, the input pipelines' images/s on each layout, the GPU check."""

import json

import pytest

from gendd_hf.bench import gpu_check, input_pipeline, step_speed


TINY_STEP = ["--batch_size", "2", "--image_size", "32", "--student_name", "test_resnet", "--head_width", "32"]


@pytest.mark.slow
def test_step_benchmark_splits_each_step_and_counts_its_flops(tmp_path):
    argv = [*TINY_STEP, "--head_depth", "1", "--diffusion_batch_mul", "2", "--repeats", "2"]
    results = step_speed.main([*argv, "--variants", "plain,channels_last", "--output", str(tmp_path)])
    assert json.loads((tmp_path / "step_speed.json").read_text()).keys() == {"plain", "channels_last"}
    assert "GenDD / KD" in (tmp_path / "step_speed.md").read_text()
    for result in results.values():
        kd, gendd = result["methods"]["kd"], result["methods"]["gendd"]
        for method in ("kd", "gendd"):
            assert len(result["times"][method]) == 2
            for step in result["times"][method]:
                assert step["step"] == pytest.approx(step["student"] + step["head"] + step["optimizer"])
        # The same student in both; GenDD's head part is the diffusion head, KD's a probe and two losses.
        assert gendd["gflops"]["student"] == kd["gflops"]["student"] > 0
        assert gendd["gflops"]["head"] > kd["gflops"]["head"] > 0
        assert result["flop_ratio"] == pytest.approx(gendd["gflops"]["step"] / kd["gflops"]["step"])
        assert result["overhead"] == pytest.approx(result["time_ratio"] / result["flop_ratio"])


def test_step_shapes_are_the_imagenet_presets():
    from gendd_hf import GenDDConfig
    from gendd_hf.cli.presets import IMAGENET_OPTIMIZATION

    shapes, config = step_speed.StepShapes(), GenDDConfig()
    assert shapes.diffusion_batch_mul == IMAGENET_OPTIMIZATION["diffusion_batch_mul"]
    assert (shapes.token_dim, shapes.head_width, shapes.head_depth) == (
        config.token_dim,
        config.head_width,
        config.head_depth,
    )
    assert (shapes.student_name, shapes.teacher_feature_dim, shapes.image_size) == ("resnet18", 512, 224)


def test_step_variants_are_the_switches_one_at_a_time():
    assert step_speed.StepOptions.from_variant("plain") == step_speed.StepOptions()
    assert step_speed.StepOptions.from_variant("bf16") == step_speed.StepOptions(bf16=True)
    with pytest.raises(ValueError, match="channels_last"):
        step_speed.StepOptions.from_variant("fp8")


@pytest.mark.slow
def test_input_pipeline_benchmark_reads_every_layout_with_both_loaders(tmp_path, no_pause_after_shuffled_streams):
    argv = ["--num_images", "16", "--batch_size", "4", "--workers", "0", "--data_dir", str(tmp_path / "data")]
    result = input_pipeline.main([*argv, "--output", str(tmp_path / "out")])
    assert [row["layout"] for row in result["rows"]] == list(input_pipeline.LAYOUTS)
    for row in result["rows"]:
        assert row["recipe_images_per_second"] > 0 and row["timm_images_per_second"] > 0
        assert row["ratio"] == pytest.approx(row["recipe_images_per_second"] / row["timm_images_per_second"])
    # Each loader gave the whole epoch of 224 px images: 16 JPEGs written, as three layouts.
    assert len(list((tmp_path / "data" / "imagefolder" / "train").rglob("*.jpg"))) == 16
    assert len(list((tmp_path / "data" / "parquet").glob("*.parquet"))) == 4
    assert "| webdataset | 0 |" in (tmp_path / "out" / "input_pipeline.md").read_text()


def test_each_layout_holds_the_same_images(tmp_path):
    import tarfile

    import pyarrow.parquet as pq

    paths = input_pipeline.write_layouts(tmp_path, num_images=6, num_shards=2)
    folder = {path.name: path.read_bytes() for path in (paths["imagefolder"] / "train").rglob("*.jpg")}
    parquet = {}
    for shard in paths["parquet"].glob("*.parquet"):
        for image in pq.read_table(shard).column("image").to_pylist():
            parquet[image["path"]] = image["bytes"]
    tars = {}
    for shard in paths["webdataset"].glob("*.tar"):
        with tarfile.open(shard) as tar:
            tars.update({m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")})
    assert len(folder) == 6 and folder == parquet == tars


@pytest.mark.slow
def test_gpu_check_runs_at_a_tiny_size_on_the_cpu(tmp_path, no_pause_after_shuffled_streams):
    report = gpu_check.main(["--tiny", "--device", "cpu", "--output", str(tmp_path)])
    assert set(report["training"]) == set(gpu_check.TRAINING_OPTIONS)
    for row in report["training"].values():
        assert row["kd_images_per_second"] > 0 and row["gendd_images_per_second"] > 0
    assert [row["layout"] for row in report["input_pipeline"]["rows"]] == list(input_pipeline.LAYOUTS)
    assert set(report["inference"]) == {"one_pass", "fast", "sampled"}
    assert all(row["images_per_second"] > 0 for row in report["inference"].values())
    assert "Inference, batch 4" in (tmp_path / "gpu_check.md").read_text()
