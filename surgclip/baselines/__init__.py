"""The SurgLaVi table's other rows as surgclip models: CLIP, MedSigLIP, SurgVLP, HecVL, PeskaVLP.

Each is an ordinary ``SurgCLIP`` module built from an architecture config (a per-frame image trunk,
a text tower, projections), so every evaluator (zero-shot, the suite, features, linear probe, CoOp
where the text tower takes token embeddings, the index) takes it as it takes SurgCLIP-B:
``encode_video`` / ``encode_text`` / ``preprocess_cfg`` / ``num_frames`` / ``prepare_for_inference``,
and ``checkpoint.weights_hash`` identifies its weights. ``surgclip.load(name, pretrained=...)``
loads them; ``MODELS`` says where each comes from, its licence, preprocessing and prompt sets.
"""
from __future__ import annotations

from .camma import CAMMA_MODELS

# name -> what the README and ``surgclip models`` say about it
MODELS: dict[str, dict] = {
    "SurgCLIP-B": {
        "source": "SurgLaVi's SurgCLIP-β (PyPI surgclip 0.1.0 layout, surgclip_beta.pth)", "licence": "MIT",
        "weights": "surgclip_beta.pth", "preprocess": "resize to 224x224 bicubic, mean = std = 0.5",
        "prompts": ("surgclip",), "clip": "16 frames, TimeSformer (divided space-time)"},
    "CLIP": {
        "source": "OpenAI CLIP ViT-B/16 through open_clip (architecture CLIP-B-16, weights 'openai')",
        "licence": "MIT", "weights": "open_clip ViT-B-16 'openai' (Hugging Face cache)",
        "preprocess": "short side to 224 bicubic, centre-crop 224, OpenAI mean/std",
        "prompts": (), "clip": "mean of the frames' embeddings"},
    "MedSigLIP": {
        "source": "Google MedSigLIP (hub google/medsiglip-448) through transformers' SigLIP classes",
        "licence": "Health AI Developer Foundations terms (gated on the hub)",
        "weights": "the google/medsiglip-448 folder (config.json, model.safetensors, tokenizer files)",
        "preprocess": "resize to 448x448 bilinear, mean = std = 0.5 (its preprocessor_config.json)",
        "prompts": (), "clip": "mean of the frames' unit embeddings (1 frame by default)"},
}
for _name in CAMMA_MODELS:
    MODELS[_name] = {
        "source": f"CAMMA's {_name} (github.com/CAMMA-public/SurgVLP): ResNet-50 + Bio_ClinicalBERT",
        "licence": "CAMMA / University of Strasbourg, all rights reserved (weights: their terms)",
        "weights": f"{_name}.pth (from CAMMA's release zip) + Bio_ClinicalBERT-vocab.txt",
        "preprocess": "resize to 360x640 bilinear, centre-crop 224, ImageNet mean/std; text: 77 tokens",
        "prompts": ("camma",), "clip": "mean of the frames' unit embeddings (1 frame by default: their protocol)"}

# names ``load`` accepts for an architecture under another name
ALIASES = {"CLIP": "CLIP-B-16"}
# names loaded from a folder of files rather than built from model_configs/
FOLDER_MODELS = ("MedSigLIP",)


def preferred_prompt_sets(model: str) -> tuple[str, ...]:
    """Prompt sets a model's authors used, tried in order before a task's default (``()`` = the default):
    CAMMA's class prompts for SurgVLP / HecVL / PeskaVLP, SurgCLIP's descriptions for SurgCLIP-B."""
    return tuple(MODELS.get(model, {}).get("prompts", ()))
