"""cpc-rl: Contrastive Predictive Coding (van den Oord, Li & Vinyals, 2018), as an auxiliary loss for
reinforcement learning and as standalone representation learning. This package is pure PyTorch."""

from cpc_rl.config import CPCConfig, CPCHeadConfig, EncoderConfig
from cpc_rl.context import ActionEmbedding, ActionRollout, GRUContext
from cpc_rl.encoders import AudioEncoder, PatchEncoder, PixelEncoder, SentenceEncoder, build_encoder, image_to_patch_sequences
from cpc_rl.losses import CPCOutput, InfoNCELoss, prediction_mask
from cpc_rl.model import CPC, CPCHead
from cpc_rl.negatives import NEGATIVE_STRATEGIES, sample_negatives

__version__ = "0.1.0"

__all__ = [
    "CPC",
    "CPCConfig",
    "CPCHead",
    "CPCHeadConfig",
    "CPCOutput",
    "EncoderConfig",
    "ActionEmbedding",
    "ActionRollout",
    "AudioEncoder",
    "GRUContext",
    "InfoNCELoss",
    "NEGATIVE_STRATEGIES",
    "PatchEncoder",
    "PixelEncoder",
    "SentenceEncoder",
    "build_encoder",
    "image_to_patch_sequences",
    "prediction_mask",
    "sample_negatives",
]
