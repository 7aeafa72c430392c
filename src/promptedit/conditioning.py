"""Conditioning: everything the UNet takes besides x_t and t, built by the model family's text encoders.

A model family turns prompts into a :class:`Conditioning` and says what the unconditional branch gets. The
denoising loop, the inversions and the masks speak only to this interface (``encode``, ``unconditional``,
``tokenizer`` for token positions); they never touch a text encoder or a tokenizer's padding themselves.

* :class:`SDText`: Stable Diffusion 1.x / 2.x: one CLIP text encoder, its last hidden states.
* :class:`SDXLText`: Stable Diffusion XL (Podell et al. 2023, Sec. 2.1-2.2): two CLIP text encoders, their
  penultimate hidden states concatenated, the second one's pooled output, and the added time ids
  (original size, crop corner, target size), as diffusers' ``StableDiffusionXLPipeline`` builds them.
* :class:`SD3Text`: Stable Diffusion 3 / 3.5 (Esser et al. 2024, Sec. 5.2): SDXL's two CLIP encoders (penultimate
  hidden states, both pooled outputs) and T5, the CLIP keys then T5's on one sequence, as diffusers'
  ``StableDiffusion3Pipeline`` builds them.

A conditioner says where the attention's text keys come from (``keys``, :class:`~promptedit.text.tokens.TextKeys`):
SD's and SDXL's are the first tokenizer's positions (SDXL's two tokenizers share CLIP's vocabulary, and a prompt
the two split differently is refused: its word maps would not agree); SD3's are the CLIP positions, then T5's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from .errors import ParameterError, PromptError, UnknownWordsWarning
from .text.tokens import KeySpan, PromptTokens, TextKeys, tokenize, unknown_words

@dataclass(frozen=True)
class Conditioning:
    """The UNet's conditioning for a batch of branches (one row per prompt).

    Attributes:
        embeddings: (n, L, D) token embeddings, the cross-attention keys and values (``encoder_hidden_states``).
        pooled: (n, P) pooled text embedding (SDXL's ``text_embeds``), else None.
        time_ids: (n, 6) SDXL's added time ids (original h, w; crop top, left; target h, w), else None.
    """

    embeddings: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def _map(self, fn) -> "Conditioning":
        return Conditioning(fn(self.embeddings), None if self.pooled is None else fn(self.pooled),
                            None if self.time_ids is None else fn(self.time_ids))

    def __getitem__(self, rows) -> "Conditioning":
        """The rows ``rows`` (an int keeps its row dimension), e.g. one branch, or the source's row."""
        rows = slice(rows, rows + 1) if isinstance(rows, int) else rows
        return self._map(lambda t: t[rows])

    def expand(self, n: int) -> "Conditioning":
        """A one-row conditioning repeated for ``n`` branches (a view; nothing is copied)."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot expand a conditioning of {len(self)} rows to {n}")
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def to(self, device=None, dtype=None) -> "Conditioning":
        """On ``device``; floating tensors in ``dtype``."""
        return self._map(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None))

    def detach(self) -> "Conditioning":
        return self._map(lambda t: t.detach())

    @staticmethod
    def cat(items: Sequence["Conditioning"]) -> "Conditioning":
        """Rows of several conditionings stacked (e.g. unconditional then conditional branches)."""
        first = items[0]
        return Conditioning(
            torch.cat([c.embeddings for c in items]),
            None if first.pooled is None else torch.cat([c.pooled for c in items]),
            None if first.time_ids is None else torch.cat([c.time_ids for c in items]),
        )

    def unet_kwargs(self) -> dict:
        """Keyword arguments of a diffusers ``UNet2DConditionModel`` call."""
        kwargs: dict = {"encoder_hidden_states": self.embeddings}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs


class TextConditioner:
    """A model family's text side: prompts → :class:`Conditioning`.

    Attributes:
        family: the family's name (``sd``, ``sdxl``, ``sd3``).
        tokenizer: the tokenizer whose positions the attention maps' keys are (the first of them, where
            :attr:`keys` has several encoders' positions).
    """

    family: str = ""
    tokenizer = None
    #: the words a closed-vocabulary model knows (a shapes-world model: the world's), None for an open one
    vocabulary: frozenset[str] | None = None

    @property
    def max_length(self) -> int:
        """Token positions of the cross-attention keys (77 for CLIP), start and end tokens included."""
        return int(self.tokenizer.model_max_length)

    @property
    def keys(self) -> TextKeys:
        """Where the attention's text keys come from (controllers find words' key positions through it): here
        :attr:`tokenizer`'s positions, :attr:`max_length` of them."""
        return TextKeys((KeySpan(self.tokenizer, 0, self.max_length),))

    @property
    def encoders(self) -> list[torch.nn.Module]:
        """The text encoders (for moving, freezing and saving the model)."""
        raise NotImplementedError

    def components(self) -> dict:
        """The tokenizers and text encoders by their ``model_index.json`` component names."""
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        """D, the width of the token embeddings the UNet's cross-attention reads."""
        raise NotImplementedError

    def tokenize(self, prompt: str, *, warn: bool = True) -> PromptTokens:
        """The prompt as the text encoder sees it (a warning when it is too long)."""
        return tokenize(self.tokenizer, prompt, warn=warn)

    def encode(self, prompts: Sequence[str], *, size: tuple[int, int] | None = None) -> Conditioning:
        """Conditioning (n rows) of ``prompts`` for images of ``size`` (h, w); over-long prompts are truncated
        with a warning."""
        raise NotImplementedError

    def encode_ids(self, ids: Sequence[torch.Tensor], *, size: tuple[int, int] | None = None) -> Conditioning:
        """Conditioning of token ids already made, one (n, L) tensor per encoder (its own tokenizer's), with
        gradients (training reads the text this way; :meth:`encode` is this, tokenized and without them)."""
        raise NotImplementedError

    def unconditional(self, n: int, *, size: tuple[int, int] | None = None) -> Conditioning:
        """The unconditional branch's conditioning ∅ for ``n`` rows (the empty prompt's, or zeros)."""
        raise NotImplementedError

    def _check_prompts(self, prompts: Sequence[str]) -> list[str]:
        """The prompts, checked to be text; one warning for an over-long prompt, one for all words the model
        does not know."""
        prompts = list(prompts)
        unknown: list[str] = []
        for p in prompts:
            if not isinstance(p, str):
                raise PromptError(f"a prompt must be text, got {type(p).__name__}")
            self.tokenize(p)  # warns when truncated
            for span in self.keys.spans:  # each encoder's tokenizer whose keys the words become
                unknown += [w for w in unknown_words(span.tokenizer, span.tokenize(p), self.vocabulary)
                            if w not in unknown]
        if unknown:
            why = ("its vocabulary is the shapes world's (docs/shapes-world.md)" if self.vocabulary is not None
                   else "its tokenizer reads them as its unknown token")
            words, give, say = ("words", "they give", "they say") if len(unknown) > 1 else ("word", "it gives", "it says")
            warnings.warn(f"the model does not know the {words} {', '.join(map(repr, unknown))}: {why}; {give} noise, "
                          f"not what {say}", UnknownWordsWarning, stacklevel=3)
        return prompts

    @property
    def device(self) -> torch.device:
        return next(self.encoders[0].parameters()).device

    def _ids(self, tokenizer, prompts: list[str], max_length: int | None = None) -> torch.Tensor:
        """(n, L) ids of ``prompts`` padded and truncated to ``max_length`` (default: the tokenizer's length)."""
        max_length = int(tokenizer.model_max_length) if max_length is None else max_length
        return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                         return_tensors="pt").input_ids.to(self.device)


class SDText(TextConditioner):
    """Stable Diffusion 1.x / 2.x: one CLIP text encoder; the conditioning is its last hidden states
    (n, 77, D), the unconditional branch the empty prompt's."""

    family = "sd"

    def __init__(self, tokenizer, text_encoder: torch.nn.Module):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return [self.text_encoder]

    def components(self) -> dict:
        return {"text_encoder": self.text_encoder, "tokenizer": self.tokenizer}

    @property
    def hidden_size(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @torch.no_grad()
    def encode(self, prompts, *, size=None) -> Conditioning:
        prompts = self._check_prompts(prompts)
        return self.encode_ids([self._ids(self.tokenizer, prompts)], size=size)

    def encode_ids(self, ids, *, size=None) -> Conditioning:
        (ids,) = ids
        dtype = next(self.text_encoder.parameters()).dtype
        return Conditioning(self.text_encoder(ids)[0].to(dtype))  # last hidden states (n, L, D)

    def unconditional(self, n: int, *, size=None) -> Conditioning:
        return self.encode([""]).expand(n)


class FluxText(TextConditioner):
    """FLUX.1 (Black Forest Labs 2024): a CLIP text encoder gives the pooled vector (n, P) and a T5 encoder the
    per-token keys (n, L, D), L = the T5 tokenizer's ``model_max_length`` (the pipeline's ``max_sequence_length``;
    T5 pads to it; no attention mask), exactly as diffusers' ``FluxPipeline.encode_prompt``. The attention's text keys are T5's positions, so :attr:`tokenizer` is T5's.
    The unconditional branch (true classifier-free guidance, ``FluxPipeline``'s ``true_cfg_scale``) is the empty
    prompt's.

    Args:
        tokenizers, text_encoders: CLIP's then T5's, as the checkpoint's ``tokenizer``/``tokenizer_2`` and
            ``text_encoder``/``text_encoder_2``.
    """

    family = "flux"

    def __init__(self, tokenizers: Sequence, text_encoders: Sequence[torch.nn.Module]):
        if len(tokenizers) != 2 or len(text_encoders) != 2:
            raise ValueError("FLUX.1 takes two tokenizers and two text encoders (CLIP, T5)")
        self.clip_tokenizer, self.tokenizer = tokenizers
        self.clip_encoder, self.t5_encoder = text_encoders

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return [self.clip_encoder, self.t5_encoder]

    def components(self) -> dict:
        return {"text_encoder": self.clip_encoder, "text_encoder_2": self.t5_encoder,
                "tokenizer": self.clip_tokenizer, "tokenizer_2": self.tokenizer}

    @property
    def hidden_size(self) -> int:
        return int(self.t5_encoder.config.d_model)

    @torch.no_grad()
    def encode(self, prompts, *, size=None) -> Conditioning:
        prompts = self._check_prompts(prompts)
        return self.encode_ids([self._ids(self.clip_tokenizer, prompts), self._ids(self.tokenizer, prompts)],
                               size=size)

    def encode_ids(self, ids, *, size=None) -> Conditioning:
        clip_ids, t5_ids = ids
        dtype = next(self.t5_encoder.parameters()).dtype
        pooled = self.clip_encoder(clip_ids, output_hidden_states=False).pooler_output  # (n, P)
        keys = self.t5_encoder(t5_ids, output_hidden_states=False)[0]  # (n, L, D)
        return Conditioning(keys.to(dtype), pooled.to(dtype))

    def unconditional(self, n: int, *, size=None) -> Conditioning:
        return self.encode([""]).expand(n)


def _same_split(family: str, tokenizer, tokenizer_2, prompt: str, *, warn: bool) -> PromptTokens:
    """``tokenizer``'s tokens of ``prompt``, after checking that ``tokenizer_2`` (the family's second CLIP) splits it
    into the same pieces: the keys then mean the same words for both encoders."""
    tokens = tokenize(tokenizer, prompt, warn=warn)
    if tokens.offsets != tokenize(tokenizer_2, prompt, warn=False).offsets:
        raise PromptError(f"{family}'s two tokenizers split the prompt {prompt!r} differently; its word maps "
                          "would not agree (rephrase the prompt)")
    return tokens


class SDXLText(TextConditioner):
    """Stable Diffusion XL: two CLIP text encoders (the second with a projection). As diffusers'
    ``StableDiffusionXLPipeline.encode_prompt``: each encoder's penultimate hidden states, concatenated along
    the feature axis (n, 77, D1 + D2); the second encoder's projected pooled output (n, P); the added time ids
    ``(H, W, 0, 0, H, W)`` (original size = target size, no crop). The unconditional branch is zeros when the
    checkpoint says ``force_zeros_for_empty_prompt`` (SDXL base), else the empty prompt's.

    Args:
        tokenizers, text_encoders: the two of each, in the checkpoint's order.
        force_zeros_for_empty_prompt: the pipeline's setting.
    """

    family = "sdxl"

    def __init__(self, tokenizers: Sequence, text_encoders: Sequence[torch.nn.Module], *,
                 force_zeros_for_empty_prompt: bool = True):
        if len(tokenizers) != 2 or len(text_encoders) != 2:
            raise ValueError("SDXL takes two tokenizers and two text encoders")
        self.tokenizer, self.tokenizer_2 = tokenizers
        self.text_encoder, self.text_encoder_2 = text_encoders
        self.force_zeros_for_empty_prompt = bool(force_zeros_for_empty_prompt)

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.text_encoder_2]

    def components(self) -> dict:
        return {"text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2,
                "tokenizer": self.tokenizer, "tokenizer_2": self.tokenizer_2}

    @property
    def hidden_size(self) -> int:
        return int(self.text_encoder.config.hidden_size + self.text_encoder_2.config.hidden_size)

    def tokenize(self, prompt: str, *, warn: bool = True) -> PromptTokens:
        """The first tokenizer's tokens, after checking that the second splits the prompt into the same
        pieces (the attention maps' keys then mean the same positions for both encoders)."""
        return _same_split(self.family.upper(), self.tokenizer, self.tokenizer_2, prompt, warn=warn)

    def time_ids(self, n: int, size: tuple[int, int]) -> torch.Tensor:
        """SDXL's micro-conditioning (Podell et al. 2023, Sec. 2.2): (n, 6) = original size, crop corner, target
        size; here original = target = ``size`` and no crop, as the pipeline's defaults."""
        h, w = size
        dtype = next(self.text_encoder_2.parameters()).dtype
        return torch.tensor([[h, w, 0, 0, h, w]], dtype=dtype, device=self.device).expand(n, 6)

    @torch.no_grad()
    def encode(self, prompts, *, size=None) -> Conditioning:
        if size is None:
            raise ValueError("SDXL's conditioning needs the image size (its time ids)")
        prompts = self._check_prompts(prompts)
        return self.encode_ids([self._ids(self.tokenizer, prompts), self._ids(self.tokenizer_2, prompts)], size=size)

    def encode_ids(self, ids, *, size=None) -> Conditioning:
        if size is None:
            raise ValueError("SDXL's conditioning needs the image size (its time ids)")
        hidden, pooled = [], None
        for encoder_ids, encoder in zip(ids, self.encoders, strict=True):
            out = encoder(encoder_ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # penultimate layer, (n, 77, D_i)
            pooled = out[0]  # the last encoder's: CLIPTextModelWithProjection's text_embeds, (n, P)
        dtype = next(self.text_encoder_2.parameters()).dtype
        return Conditioning(torch.cat(hidden, dim=-1).to(dtype), pooled.to(dtype), self.time_ids(len(ids[0]), size))

    def unconditional(self, n: int, *, size=None) -> Conditioning:
        cond = self.encode([""], size=size)
        if self.force_zeros_for_empty_prompt:
            cond = replace(cond, embeddings=torch.zeros_like(cond.embeddings), pooled=torch.zeros_like(cond.pooled))
        return cond.expand(n)


#: the longest T5 sequence SD3 takes (diffusers' ``StableDiffusion3Pipeline`` refuses more), and the pipeline's default
SD3_MAX_SEQUENCE_LENGTH, SD3_DEFAULT_SEQUENCE_LENGTH = 512, 256


class SD3Text(TextConditioner):
    """Stable Diffusion 3 / 3.5: two CLIP text encoders with projections (CLIP-L, CLIP-G) and a T5 encoder. As
    diffusers' ``StableDiffusion3Pipeline.encode_prompt``: both CLIPs' penultimate hidden states concatenated on
    the feature axis and zero-padded to T5's width, then T5's last hidden states after them on the sequence axis:
    embeddings (n, 77 + max_sequence_length, D_T5); the pooled vector is both CLIPs' projected pooled outputs
    concatenated (n, P1 + P2). The unconditional branch is the empty prompt's (the pipeline's negative prompt "").

    Args:
        tokenizers, text_encoders: the three of each, in the checkpoint's order (CLIP-L, CLIP-G, T5).
        max_sequence_length: T5's length (the pipeline's argument, at most 512; default: the pipeline's 256, or
            the T5 tokenizer's ``model_max_length`` where shorter, so that a saved model keeps its length).
    """

    family = "sd3"

    def __init__(self, tokenizers: Sequence, text_encoders: Sequence[torch.nn.Module], *,
                 max_sequence_length: int | None = None):
        if len(tokenizers) != 3 or len(text_encoders) != 3:
            raise ValueError("SD3 takes three tokenizers and three text encoders (two CLIPs and T5)")
        if max_sequence_length is None:
            max_sequence_length = min(SD3_DEFAULT_SEQUENCE_LENGTH, int(tokenizers[2].model_max_length))
        if (isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, int)
                or not 1 <= max_sequence_length <= SD3_MAX_SEQUENCE_LENGTH):
            raise ParameterError(f"SD3's max_sequence_length must be a whole number from 1 to "
                                 f"{SD3_MAX_SEQUENCE_LENGTH}, got {max_sequence_length!r}")
        self.tokenizer, self.tokenizer_2, self.tokenizer_3 = tokenizers
        self.text_encoder, self.text_encoder_2, self.text_encoder_3 = text_encoders
        self.max_sequence_length = max_sequence_length

    @property
    def clip_length(self) -> int:
        """The CLIP keys' count (77), before T5's."""
        return int(self.tokenizer.model_max_length)

    @property
    def max_length(self) -> int:
        """The text keys: 77 CLIP positions, then ``max_sequence_length`` T5 positions."""
        return self.clip_length + self.max_sequence_length

    @property
    def keys(self) -> TextKeys:
        """The CLIP keys (the first tokenizer's positions; the second splits prompts alike), then T5's: a word has
        key positions in both."""
        return TextKeys((KeySpan(self.tokenizer, 0, self.clip_length),
                         KeySpan(self.tokenizer_3, self.clip_length, self.max_sequence_length)))

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.text_encoder_2, self.text_encoder_3]

    def components(self) -> dict:
        return {"text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2,
                "text_encoder_3": self.text_encoder_3, "tokenizer": self.tokenizer, "tokenizer_2": self.tokenizer_2,
                "tokenizer_3": self.tokenizer_3}

    @property
    def hidden_size(self) -> int:
        return int(self.text_encoder_3.config.d_model)

    def tokenize(self, prompt: str, *, warn: bool = True) -> PromptTokens:
        """The first CLIP tokenizer's tokens, after checking that the second splits the prompt into the same
        pieces (as SDXL's); a warning, too, when T5 truncates it."""
        tokens = _same_split("SD3", self.tokenizer, self.tokenizer_2, prompt, warn=warn)
        tokenize(self.tokenizer_3, prompt, warn=warn, max_length=self.max_sequence_length)
        return tokens

    @torch.no_grad()
    def encode(self, prompts, *, size=None) -> Conditioning:
        prompts = self._check_prompts(prompts)
        return self.encode_ids([self._ids(self.tokenizer, prompts), self._ids(self.tokenizer_2, prompts),
                                self._ids(self.tokenizer_3, prompts, self.max_sequence_length)], size=size)

    def encode_ids(self, ids, *, size=None) -> Conditioning:
        clip_ids, clip_2_ids, t5_ids = ids
        dtype = next(self.text_encoder_3.parameters()).dtype
        hidden, pooled = [], []
        for encoder_ids, encoder in ((clip_ids, self.text_encoder), (clip_2_ids, self.text_encoder_2)):
            out = encoder(encoder_ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # penultimate layer, (n, 77, D_i)
            pooled.append(out[0])  # CLIPTextModelWithProjection's text_embeds, (n, P_i)
        t5 = self.text_encoder_3(t5_ids)[0].to(dtype)  # last hidden states, (n, L, D)
        clip = torch.cat(hidden, dim=-1).to(dtype)  # (n, 77, D1 + D2), zero-padded to D below
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return Conditioning(torch.cat([clip, t5], dim=-2), torch.cat(pooled, dim=-1).to(dtype))

    def unconditional(self, n: int, *, size=None) -> Conditioning:
        return self.encode([""]).expand(n)
