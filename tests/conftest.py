"""Shared fixtures: tiny random-weight SD components built in code, and a model folder of them."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def tiny_model():
    from promptedit.testing import tiny_components

    return tiny_components(0)


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    return tiny_model.tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    from promptedit.testing import save_model

    return save_model(tiny_model, tmp_path_factory.mktemp("models") / "tiny")
