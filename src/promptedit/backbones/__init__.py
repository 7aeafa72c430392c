"""Backbones: what the runner needs of a denoiser (:class:`~promptedit.backbones.base.Backbone`), and its
attention sites (:class:`~promptedit.backbones.base.AttentionSite`).

* :mod:`promptedit.backbones.base`: the interface and the attention site.
* :mod:`promptedit.backbones.unet`: diffusers' ``UNet2DConditionModel`` (SD 1.x / 2.x, SDXL).
"""
