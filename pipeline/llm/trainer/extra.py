"""The optional training extra (torch, transformers, peft, accelerate): which packages it holds, whether they are
installed (checked without importing them), and the helpers shared by the modules that use them."""

from __future__ import annotations

import importlib.util
import random

from pipeline.errors import LLMError

TRAIN_EXTRA = "requirements-train.txt"
TRAIN_PACKAGES = ("torch", "transformers", "peft", "accelerate")

# peft 0.21 reads a property that transformers 5 deprecated; the warning is not the user's to act on.
PEFT_DEPRECATION = r".*is_gradient_checkpointing.*"


def missing_packages() -> list[str]:
    """The packages of the training extra that cannot be imported (checked without importing them)."""
    missing = []
    for name in TRAIN_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None or has no spec
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra() -> None:
    """Raise :class:`LLMError` naming the install command and the missing packages, if any are missing."""
    missing = missing_packages()
    if missing:
        raise LLMError(
            f"local training needs the training extra: pip install -r {TRAIN_EXTRA} (missing: {', '.join(sorted(missing))})"
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's and (when installed) numpy's random generators."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
