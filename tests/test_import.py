import subprocess
import sys


def test_import_is_light():
    code = ("import sys, surgclip; heavy = ['lightning', 'decord', 'faiss', 'open_clip', 'timm', 'torchvision', "
            "'transformers', 'pytorch_lightning']; print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api():
    import surgclip

    for name in ("load", "tokenize", "available_models", "VideoPreprocessor", "save_pretrained", "create_model",
                 "list_models", "get_tokenizer"):
        assert hasattr(surgclip, name)
    assert set(surgclip.available_models()) >= {"SurgCLIP-B", "CLIP-B-16", "tiny"}
