"""surgclip: contrastive video-text pretraining, zero-shot evaluation and text-to-clip search for
surgical video.

    model, preprocess, tokenizer = surgclip.load("SurgCLIP-B", device="cuda")
    tokens = surgclip.tokenize(["clipping of the cystic duct"], tokenizer, device="cuda")
    video = surgclip.VideoPreprocessor(num_frames=16, mode="centered")("frames/video01/000843.jpg")
    logits, _ = model(video.cuda(), tokens)

Importing this package is light: lightning, decord, faiss, timm and open_clip load when used.
"""
from .checkpoint import CheckpointMismatchError, read_state_dict, save_pretrained
from .factory import (available_models, create_model, create_model_and_transforms, get_model_config, get_tokenizer,
                      list_models, load)
from .model import SurgCLIP
from .pretrained import WeightsNotFoundError, cache_dir, list_pretrained
from .tokenizer import tokenize
from .transform import ClipTransform, PreprocessCfg, VideoPreprocessor, get_preprocess

__version__ = "0.2.0"
__all__ = [
    "load", "tokenize", "available_models", "VideoPreprocessor", "get_preprocess", "list_models", "create_model",
    "create_model_and_transforms", "get_model_config", "get_tokenizer", "save_pretrained", "read_state_dict",
    "SurgCLIP", "ClipTransform", "PreprocessCfg", "CheckpointMismatchError", "WeightsNotFoundError", "cache_dir",
    "list_pretrained",
]
