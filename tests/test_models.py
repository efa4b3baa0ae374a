import pytest
import torch

from sepnet.models import CRNN, MultiTaskUNetCRNN, UNetCRNN

SMALL = {"hidden_size": 8, "num_layers": 2, "encoder_channels": (4, 8, 8), "n_bins": 64, "audio_channels": 2, "dropout": 0.0}
HEAD = {"head_size": 4, "head_dropout": 0.4}


@pytest.mark.parametrize("model_class", [CRNN, UNetCRNN, MultiTaskUNetCRNN])
@pytest.mark.parametrize("frames", [1, 7, 63])
@pytest.mark.parametrize("target_stems", [["vocals"], ["bass", "drums", "other", "vocals"]])
def test_masks_shape_range_and_gradients(model_class, frames, target_stems):
    model = model_class(target_stems, **SMALL, **(HEAD if model_class is MultiTaskUNetCRNN else {}))
    x = torch.randn(3, 2, 64, frames, requires_grad=True)
    masks = model(x)
    assert masks.shape == (3, len(target_stems), 2, 64, frames)
    assert 0 <= masks.min() and masks.max() <= 1
    loss = masks.mean()
    if model_class is MultiTaskUNetCRNN:
        masks, heads = model.forward_with_heads(x)
        beats = heads["beats"]
        assert beats.shape == (3, frames)
        loss = masks.mean() + beats.mean()
    loss.backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("batch", [1, 5])
def test_unet_crnn_any_batch_size_and_skips_change_the_decoder(batch):
    unet = UNetCRNN(["vocals"], **SMALL)
    assert unet(torch.randn(batch, 2, 64, 9)).shape == (batch, 1, 2, 64, 9)
    crnn = CRNN(["vocals"], **SMALL)
    # Skip connections double every decoder block's input channels; the encoder and LSTM are the same.
    for a, b in zip(crnn.decoder, unet.decoder):
        assert b.conv.in_channels == 2 * a.conv.in_channels
    shapes = lambda m, prefix: {k: v.shape for k, v in m.state_dict().items() if k.startswith(prefix)}
    assert shapes(crnn, "encoder") == shapes(unet, "encoder")
    assert shapes(crnn, "bottleneck") == shapes(unet, "bottleneck")


def test_unet_skips_carry_encoder_detail_to_the_masks():
    """Zeroing the bottleneck's output leaves the U-Net's masks input-dependent (through the skips), not the CRNN's."""
    torch.manual_seed(0)
    x1, x2 = torch.randn(1, 2, 64, 5), torch.randn(1, 2, 64, 5)
    for model_class, depends in ((CRNN, False), (UNetCRNN, True)):
        model = model_class(["vocals"], **SMALL).eval()
        model.bottleneck.project_out[0].weight.data.zero_()
        model.bottleneck.project_out[0].bias.data.zero_()
        with torch.no_grad():
            assert (not torch.allclose(model(x1), model(x2))) == depends


def test_rhythm_head_is_a_funnel_with_the_logs_layers():
    model = MultiTaskUNetCRNN(["vocals"], **SMALL, head_size=4, head_dropout=0.4)
    layers = list(model.rhythm_head.layers)
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert layers[0].in_features == 2 * SMALL["hidden_size"] > layers[0].out_features == 4 > layers[-1].out_features == 1
    assert layers[3].p == 0.4


def test_crnn_rejects_wrong_input_shape():
    model = CRNN(["vocals"], hidden_size=8, num_layers=1, encoder_channels=(4,), n_bins=64, audio_channels=2, dropout=0.0)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(1, 2, 32, 5))


def test_crnn_rejects_bins_not_divisible():
    with pytest.raises(ValueError, match="divisible"):
        CRNN(["vocals"], **{**SMALL, "n_bins": 100})


def test_training_masks_are_the_separators_raw_masks_whatever_the_inference_knobs():
    """The loss sees the model's masks; mask_scale/threshold only change what forward() returns."""
    from sepnet.dsp.frontend import SpectralFrontEnd
    from sepnet.inference.separator import InferenceSettings, Separator

    torch.manual_seed(0)
    separator = Separator(SpectralFrontEnd(n_fft=126, hop_length=32, n_bins=64), CRNN(["vocals"], **SMALL)).eval()
    mixture = torch.randn(2, 2, 640)
    with torch.no_grad():
        plain_masks, spec = separator.raw_masks(mixture)
        plain = separator(mixture)
        # (eval mode separates chunk by chunk: the same estimates up to float rounding)
        torch.testing.assert_close(plain, separator.apply_masks(plain_masks, spec, 640), atol=1e-6, rtol=1e-5)
        separator.inference = InferenceSettings(mask_scale=3.0, threshold=0.5)
        knob_masks, _ = separator.raw_masks(mixture)
        assert torch.equal(knob_masks, plain_masks)
        assert not torch.allclose(separator(mixture), plain)


def test_multitask_signature_lists_every_argument_with_its_type():
    """The registry checks configs and stored checkpoints against the constructor's signature and hints."""
    import inspect
    import typing

    parameters = list(inspect.signature(MultiTaskUNetCRNN.__init__).parameters)
    assert parameters == [*inspect.signature(CRNN.__init__).parameters, "head_size", "head_dropout"]
    hints = typing.get_type_hints(MultiTaskUNetCRNN.__init__)
    assert hints["hidden_size"] is int and hints["head_size"] is int and hints["head_dropout"] is float


def small_separator(model):
    from sepnet.dsp.frontend import SpectralFrontEnd
    from sepnet.inference.separator import Separator

    return Separator(SpectralFrontEnd(n_fft=126, hop_length=32, n_bins=64), model).eval()


@pytest.mark.parametrize(
    "model",
    [CRNN(STEMS4 := ["bass", "drums", "other", "vocals"], **SMALL),
     UNetCRNN(STEMS4, **SMALL),
     UNetCRNN(STEMS4, **SMALL, mask_activation="softmax"),
     MultiTaskUNetCRNN(["vocals"], **SMALL, **HEAD)],
    ids=["crnn", "unet", "unet-softmax", "unet-mtl"],
)
@pytest.mark.parametrize("samples", [640, 40])  # 40: shorter than the STFT's reflection padding
def test_chunkwise_inference_gives_the_batched_forwards_estimates(model, samples):
    """In eval mode a CRNN separates chunk by chunk around one batched BiLSTM pass; the estimates are unchanged."""
    from sepnet.inference.separator import InferenceSettings

    torch.manual_seed(0)
    separator = small_separator(model)
    mixture = torch.randn(3, 2, samples)
    with torch.no_grad():
        for settings in (InferenceSettings(), InferenceSettings(mask_scale=1.5, threshold=0.1, wiener_iters=1)):
            separator.inference = settings
            chunkwise = separator(mixture)
            separator.training = True  # the Separator's own flag only: the model stays in eval mode
            batched = separator(mixture)
            separator.training = False
            assert chunkwise.shape == (3, len(model.target_stems), 2, samples)
            torch.testing.assert_close(chunkwise, batched, atol=1e-5, rtol=1e-4)


def test_chunkwise_inference_batches_only_the_recurrent_stage():
    model = UNetCRNN(["vocals"], **SMALL)
    separator = small_separator(model)
    seen: dict[str, list[int]] = {"encoder": [], "lstm": [], "decoder": []}
    model.encoder[0].register_forward_hook(lambda m, args, out: seen["encoder"].append(args[0].shape[0]))
    model.bottleneck.lstm.register_forward_hook(lambda m, args, out: seen["lstm"].append(args[0].shape[0]))
    model.decoder[0].register_forward_hook(lambda m, args, out: seen["decoder"].append(args[0].shape[0]))
    with torch.no_grad():
        estimates = separator.separate_chunks(list(torch.randn(5, 2, 640)))
    assert [e.shape for e in estimates] == [(1, 2, 640)] * 5
    assert seen["lstm"] == [5]
    # Each chunk is encoded once for the BiLSTM and once more for its U-Net skips, then decoded alone.
    assert seen["encoder"] == [1] * 10 and seen["decoder"] == [1] * 5
