import numpy as np
import pytest

from deepfinder.core import devices
from deepfinder.core.model import build_unet, count_parameters, resolve_precision
from deepfinder.core.settings import check_patch_size


@pytest.mark.parametrize("n_classes, expected", [(2, 902_994), (4, 903_060), (13, 903_357)])
def test_parameter_count_is_the_papers(n_classes, expected):
    model = build_unet(n_classes)
    assert count_parameters(model) == expected == 902_928 + 33 * n_classes
    assert model.output_shape[-1] == n_classes


@pytest.mark.parametrize("patch_size", [18, 50, 3])
def test_patch_not_multiple_of_4_is_refused_with_the_reason(patch_size):
    with pytest.raises(ValueError, match="not a multiple of 4"):
        build_unet(3, patch_size)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        check_patch_size(patch_size)


def test_output_is_a_per_voxel_probability_of_each_class():
    model = build_unet(3, 16)
    scores = model.predict(np.random.default_rng(0).normal(size=(2, 16, 16, 16, 1)), verbose=0)
    assert scores.shape == (2, 16, 16, 16, 3)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, rtol=1e-5)


def test_bfloat16_network_gives_the_float32_answer_with_the_same_weights():
    exact = build_unet(3, 16)
    fast = build_unet(3, 16, precision="bfloat16")
    fast.set_weights(exact.get_weights())
    assert count_parameters(fast) == count_parameters(exact)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16, 1)).astype(np.float32)
    exact_scores, fast_scores = exact.predict(x, verbose=0), fast.predict(x, verbose=0)
    assert fast_scores.dtype == np.float32
    # A CPU without bfloat16 instructions emulates it, rounding every layer's output: single
    # scores then differ by up to ~0.08 (AVX2-only EPYC), but the scores on average and the
    # voxels' classes agree.
    assert np.abs(fast_scores - exact_scores).mean() < 0.02
    assert (fast_scores.argmax(axis=-1) == exact_scores.argmax(axis=-1)).mean() > 0.95


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        build_unet(3, 16, precision="half")


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_unet(1)


def test_upstream_keras2_weights_predict_exactly_as_the_same_weights_in_our_format(tmp_path):
    from deepfinder.core.model import load_model, save_model
    from deepfinder.tests.upstream_weights import write_upstream_weights

    upstream = tmp_path / "net_weights_FINAL.h5"
    arrays = write_upstream_weights(upstream, n_classes=5, seed=3)
    model, metadata = load_model(upstream, n_classes=5)
    assert metadata["n_classes"] == 5

    reference = build_unet(5)
    reference.set_weights(arrays)
    patch = np.random.default_rng(0).normal(size=(1, 24, 24, 24, 1)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict(patch, verbose=0), reference.predict(patch, verbose=0), rtol=1e-5, atol=1e-6
    )

    ours = save_model(model, tmp_path / "ours.weights.h5", {"class_names": list("abcde")})
    again, _ = load_model(ours)
    np.testing.assert_allclose(
        again.predict(patch, verbose=0), reference.predict(patch, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_upstream_weights_with_another_class_count_are_refused(tmp_path):
    from deepfinder.core.model import load_model
    from deepfinder.tests.upstream_weights import write_upstream_weights

    upstream = tmp_path / "net_weights_FINAL.h5"
    write_upstream_weights(upstream, n_classes=13)
    with pytest.raises(ValueError, match="DeepFinder U-net with 4 classes"):
        load_model(upstream, n_classes=4)


@pytest.mark.parametrize(
    "gpus, cpu_instructions, expected",
    [
        ([(8, 0)], [], "bfloat16"),  # A100
        ([(9, 0), (9, 0)], [], "bfloat16"),  # two H100
        ([(7, 0)], ["avx512_bf16"], "float32"),  # V100: the GPU computes, not the CPU
        ([(8, 6), (7, 5)], [], "float32"),  # a Turing beside an Ampere slows both
        ([], ["amx_bf16", "avx512_bf16"], "bfloat16"),
        ([], [], "float32"),
    ],
)
def test_auto_precision_is_bfloat16_where_the_hardware_computes_it(
    monkeypatch, gpus, cpu_instructions, expected
):
    monkeypatch.setattr(devices, "gpu_compute_capabilities", lambda: gpus)
    monkeypatch.setattr(devices, "cpu_bfloat16_instructions", lambda: cpu_instructions)
    assert resolve_precision("auto") == expected
    assert resolve_precision("float32") == "float32"
