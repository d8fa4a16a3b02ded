"""VMT-Adapter: once-for-all multi-task adapters on frozen Swin Transformers."""

__version__ = "0.1.0"


def from_pretrained(path, pretrained=None, allow_other_base: bool = False):
    """Rebuild a trained model from a run or adapter folder (``adapter.json`` + ``adapter.safetensors``).

    ``pretrained`` names the base backbone weights it was trained on (checked by SHA-256; a
    ``builtin:`` name works too); ``allow_other_base=True`` skips that check. Imported lazily so
    that ``import vmt_adapter`` stays cheap.
    """
    from .models.io import model_from_adapter

    return model_from_adapter(path, pretrained=pretrained, allow_other_base=allow_other_base)
