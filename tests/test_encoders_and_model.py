"""Encoders give the documented shapes; the composed CPC model trains its encoder; configs round-trip."""

import json

import pytest
import torch

from cpc_rl import (
    CPC,
    AudioEncoder,
    CPCConfig,
    CPCHead,
    CPCHeadConfig,
    EncoderConfig,
    PatchEncoder,
    PixelEncoder,
    SentenceEncoder,
    build_encoder,
    image_to_patch_sequences,
)


def test_pixel_encoder_shapes_channels_first_and_last():
    frames = torch.randint(0, 256, (2, 5, 3, 60, 80), dtype=torch.uint8)
    encoder = PixelEncoder((3, 60, 80), out_dim=64)
    assert encoder(frames).shape == (2, 5, 64)
    last = PixelEncoder((60, 80, 3), out_dim=64, channels_last=True)
    last.load_state_dict(encoder.state_dict())
    assert torch.allclose(last(frames.permute(0, 1, 3, 4, 2)), encoder(frames), atol=1e-6)


def test_pixel_encoder_scales_uint8_inside():
    encoder = PixelEncoder((3, 60, 80), out_dim=16)
    frames = torch.randint(0, 256, (1, 2, 3, 60, 80), dtype=torch.uint8)
    assert torch.allclose(encoder(frames), encoder(frames.float() / 255.0), atol=1e-6)


def test_audio_encoder_downsamples_by_160_with_the_paper_layers():
    encoder = AudioEncoder(hidden_dim=32, out_dim=24)
    assert encoder(torch.randn(2, 16000)).shape == (2, 100, 24)
    assert encoder(torch.randn(2, 1, 3200)).shape == (2, 20, 24)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [c.kernel_size[0] for c in convs] == [10, 8, 4, 4, 4]
    assert [c.stride[0] for c in convs] == [5, 4, 2, 2, 2]
    assert encoder.downsampling == 160


def test_audio_latent_depends_only_on_its_receptive_field():
    """Channel norm shares no statistics across time: the future cannot leak into z_t."""
    encoder = AudioEncoder(hidden_dim=16, out_dim=16).eval()
    wave = torch.randn(1, 3200)
    later = wave.clone()
    later[:, 2400:] = torch.randn(1, 800)
    assert torch.allclose(encoder(wave)[:, :10], encoder(later)[:, :10], atol=1e-5)


def test_patch_grid_is_read_as_column_sequences_top_to_bottom():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    patches, columns = image_to_patch_sequences(images, patch_size=4, stride=2)
    assert columns == 3 and patches.shape == (2 * 3, 3, 1, 4, 4)
    # sequence 1 = image 0, column 1; its step 2 = row 2: pixels rows 4..7, cols 2..5
    assert torch.equal(patches[1, 2, 0], images[0, 0, 4:8, 2:6])
    encoder = PatchEncoder(in_channels=1, out_dim=12, width=8)
    assert encoder(patches).shape == (6, 3, 12)


def test_sentence_encoder_ignores_padding_words():
    encoder = SentenceEncoder(vocab_size=50, embed_dim=8, out_dim=12)
    tokens = torch.randint(1, 50, (2, 4, 6))
    assert encoder(tokens).shape == (2, 4, 12)
    with pytest.raises(ValueError, match="integer"):
        encoder(tokens.float())


@pytest.mark.parametrize(
    "encoder, bad",
    [
        (PixelEncoder((3, 60, 80)), torch.zeros(2, 3, 60, 80, dtype=torch.uint8)),
        (PatchEncoder(), torch.zeros(2, 3, 8, 8)),
        (SentenceEncoder(10), torch.zeros(2, 5, dtype=torch.long)),
    ],
)
def test_wrong_input_rank_raises_naming_x(encoder, bad):
    with pytest.raises(ValueError, match=r"x must have rank"):
        encoder(bad)


def test_unknown_encoder_is_named():
    with pytest.raises(ValueError, match="encoder='vit'"):
        build_encoder("vit")


def test_cpc_gradients_reach_the_encoder_and_training_lowers_the_loss():
    torch.manual_seed(0)
    config = CPCConfig(
        encoder=EncoderConfig("patch", {"in_channels": 1, "out_dim": 16, "width": 8}),
        head=CPCHeadConfig(steps_ahead=2, context_dim=16, n_negatives=8),
    )
    model = CPC(config)
    # smooth images: nearby patch rows are predictable
    base = torch.linspace(0, 1, 16)
    images = (base[None, :, None] * torch.rand(8, 1, 1) + base[None, None, :] * torch.rand(8, 1, 1))[:, None]
    patches, _ = image_to_patch_sequences(images, 4, 2)
    out = model(patches)
    out.loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    before = out.loss.item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model(patches, generator=torch.Generator().manual_seed(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(patches, generator=torch.Generator().manual_seed(0)).loss.item() < before - 0.3


def test_config_round_trips_through_json(tmp_path):
    config = CPCConfig(
        encoder=EncoderConfig("audio", {"hidden_dim": 64, "out_dim": 32}),
        head=CPCHeadConfig(steps_ahead=7, negatives="same_sequence", n_negatives="all", temperature=0.1),
    )
    config.save(tmp_path / "cpc.json")
    again = CPCConfig.load(tmp_path / "cpc.json")
    assert again == config
    assert json.loads(again.to_json())["head"]["steps_ahead"] == 7
    assert isinstance(CPC(again).encoder, AudioEncoder)


def test_config_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValueError, match="horizon"):
        CPCHeadConfig.from_dict({"horizon": 3})
    with pytest.raises(ValueError, match="steps_ahead"):
        CPCHeadConfig(steps_ahead=0)
    with pytest.raises(ValueError, match="negatives"):
        CPCHeadConfig(negatives="everything")
    with pytest.raises(ValueError, match="not valid JSON"):
        CPCConfig.from_json("{nope")


def test_projection_head_feeds_the_gru_and_the_loss_and_passes_gradients_to_z():
    torch.manual_seed(0)
    head = CPCHead(12, CPCHeadConfig(steps_ahead=2, context_dim=8, n_negatives=4, projection_dim=6))
    assert head.context.gru.input_size == 6 and head.projection[0].in_features == 12
    latents = torch.randn(3, 10, 12, requires_grad=True)
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    out = head(latents, generator=generator())
    # the same as running the GRU and the loss on the projection by hand
    projected = head.projection(latents)
    context, _ = head.context(projected)
    assert torch.allclose(out.loss, head.loss(context, projected, generator=generator()).loss)
    assert not torch.allclose(out.loss, head.loss(context, latents[..., :6], generator=generator()).loss)
    out.loss.backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    # without a projection, z_t goes in as it is
    plain = CPCHead(12, CPCHeadConfig(steps_ahead=2, context_dim=8))
    assert plain.projection is None and plain.context.gru.input_size == 12
    assert torch.equal(plain.project(latents), latents)


def test_cpc_context_goes_through_the_projection():
    torch.manual_seed(0)
    config = CPCConfig(
        encoder=EncoderConfig("patch", {"in_channels": 1, "out_dim": 16, "width": 8}),
        head=CPCHeadConfig(steps_ahead=2, context_dim=16, n_negatives=8, projection_dim=4),
    )
    model = CPC(config)
    patches, _ = image_to_patch_sequences(torch.rand(2, 1, 16, 16), 4, 2)
    expected, _ = model.head.context(model.head.projection(model.encoder(patches)))
    assert torch.allclose(model.context(patches), expected)
    assert model(patches).loss.isfinite()
    assert CPCConfig.from_json(config.to_json()).head.projection_dim == 4


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_projection_dim_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="projection_dim must be a positive integer or None"):
        CPCHeadConfig(projection_dim=bad)
