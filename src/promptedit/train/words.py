"""Keeping words apart in the text encoder's output, for the embedded model's training (ours).

Why: the text encoder is trained from scratch with the denoiser, and the denoising loss alone lets it
keep only what the UNet learned to use first. Measured on the 8500-step model: the encoder's output at
the shape word of ``a red circle on a white background`` moved by 7 % (relative norm) when ``circle``
became ``square`` and by 30–56 % for ``heart``, ``triangle``, ``star``, against 90–150 % when the colour
changed, although the input embeddings of the shape words are as far apart as the colours' (cosine ≤ 0.48).
The UNet cannot draw a shape it cannot read, and generated shapes followed the seed, not the word.
Prompt-to-Prompt needs the same property: a word's map and values must carry that word.

The term asks every word's output to name its word: a cosine classifier (Wang et al., "CosFace", CVPR 2018,
without the margin) over the vocabulary, on the encoder's output at each word position,

    L_id = −mean over word positions i of log softmax_k(τ · cos(h_i, w_k))[token_i],

with a fixed temperature τ, so that the loss falls only when the outputs of different words point in
different directions (a linear head could instead scale up arbitrarily small differences). The
classifier's rows w_k are trained with it and discarded at export. Nothing here imports diffusers.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


def word_positions(ids: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """Boolean mask (B, L) of the positions holding a word: not a start, end or padding token."""
    special = torch.tensor(sorted(set(special_ids)), dtype=ids.dtype, device=ids.device)
    return ~torch.isin(ids, special)


def token_identity_loss(hidden: torch.Tensor, ids: torch.Tensor, words: torch.Tensor, classifier: torch.Tensor,
                        temperature: float = 10.0) -> torch.Tensor:
    """L_id: cross-entropy of a cosine classifier naming each word's token from the encoder output (ours).

    Args:
        hidden: the text encoder's output, (B, L, D).
        ids: the token ids, (B, L).
        words: which positions count, (B, L) bool (:func:`word_positions`).
        classifier: one row per vocabulary entry, (V, D); only its direction matters.
        temperature: τ, the scale of the cosines (the loss's floor falls as τ grows).
    Returns a scalar; 0 (with gradients) when no position is a word (all captions dropped).
    """
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    h = F.normalize(hidden[words], dim=-1)  # (N, D): the word positions of the batch
    if h.shape[0] == 0:
        return hidden.sum() * 0.0
    logits = temperature * h @ F.normalize(classifier, dim=-1).T  # (N, V)
    return F.cross_entropy(logits, ids[words])
