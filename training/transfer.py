"""Fine-tuning from a pre-training checkpoint (paper section 5.2).

Copied: the image feature extractor (trunk, 1x1 conv, BatchNorm), the tag embedder, the
tag-to-image attention and both Transformer encoders. Started fresh: the two stream heads
and the gate. Nothing is frozen by this step.
"""

from __future__ import annotations

from magneto.config import ConfigError
from magneto.data.vocabulary import Vocabulary
from magneto.infer.checkpoint import Checkpoint
from magneto.model.architectures import TagModel

COPIED_BLOCKS = (
    "image_extractor.",
    "tag_embedder.",
    "image_stream.attention.",
    "tag_stream.encoder.",
    "image_stream.encoder.",
)


def init_from_pretrained(
    model: TagModel, checkpoint: Checkpoint, vocabulary: Vocabulary
) -> dict[str, int]:
    """Copy the pre-trained blocks into ``model``; return tensors copied per block."""
    if checkpoint.vocabulary != vocabulary:
        raise ConfigError("the pre-training checkpoint was made with a different vocabulary")
    target = model.state_dict()
    copied: dict[str, int] = dict.fromkeys(COPIED_BLOCKS, 0)
    updates = {}
    for name, tensor in checkpoint.model_state.items():
        block = next((b for b in COPIED_BLOCKS if name.startswith(b)), None)
        if block is None or name not in target:
            continue
        if target[name].shape != tensor.shape:
            raise ConfigError(
                f"pre-trained {name} has shape {tuple(tensor.shape)}, the model needs "
                f"{tuple(target[name].shape)}: use the same model settings as for pre-training"
            )
        updates[name] = tensor
        copied[block] += 1
    missing = [b for b, n in copied.items() if n == 0 and any(k.startswith(b) for k in target)]
    if missing:
        raise ConfigError(f"the pre-training checkpoint has no {', '.join(missing)} weights")
    model.load_state_dict(updates, strict=False)
    return copied
